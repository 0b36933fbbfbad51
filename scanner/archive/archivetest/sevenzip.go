// Package archivetest builds hostile archives for tests: tiny files whose
// headers ask a decoder for more than any real archive needs.
package archivetest

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// 7z coder method ids and properties.
var (
	LZMA  = []byte{0x03, 0x01, 0x01}
	LZMA2 = []byte{0x21}
	PPMd  = []byte{0x03, 0x04, 0x01}
	Zstd  = []byte{0x04, 0xf7, 0x11, 0x01}
)

// LZMAProps are LZMA coder properties (lc=3, lp=0, pb=2) declaring dict.
func LZMAProps(dict uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{0x5d}, dict)
}

// PPMdProps are PPMd coder properties declaring order and memory size.
func PPMdProps(order byte, mem uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{order}, mem)
}

// LZMA2Dict3GiB is the LZMA2 property byte declaring a 3 GiB dictionary.
const LZMA2Dict3GiB = 39

// SevenZip returns a 7z archive with one file, name, stored in one folder
// that a single coder (method id, props) decodes from packed into size
// bytes. With encodedHeader the folder holds the archive's header instead,
// so its decoder is built while the archive is being opened.
func SevenZip(name string, id, props []byte, size uint64, packed []byte, encodedHeader bool) []byte {
	streams := []byte{0x06} // PackInfo: position 0, one stream
	streams = append(streams, num(0)...)
	streams = append(streams, num(1)...)
	streams = append(streams, 0x09)
	streams = append(streams, num(uint64(len(packed)))...)
	streams = append(streams, 0x00)
	streams = append(streams, 0x07, 0x0b) // UnpackInfo: one folder, inline
	streams = append(streams, num(1)...)
	streams = append(streams, 0x00)
	streams = append(streams, num(1)...) // one simple coder
	if len(props) == 0 {
		streams = append(streams, byte(len(id)))
		streams = append(streams, id...)
	} else {
		streams = append(streams, byte(len(id))|0x20)
		streams = append(streams, id...)
		streams = append(streams, num(uint64(len(props)))...)
		streams = append(streams, props...)
	}
	streams = append(streams, 0x0c)
	streams = append(streams, num(size)...)
	streams = append(streams, 0x00, 0x00) // end of UnpackInfo, of StreamsInfo

	var hdr []byte
	if encodedHeader {
		hdr = append([]byte{0x17}, streams...)
	} else {
		var utf []byte
		for _, c := range utf16.Encode([]rune(name + "\x00")) {
			utf = binary.LittleEndian.AppendUint16(utf, c)
		}
		hdr = append([]byte{0x01, 0x04}, streams...) // Header, MainStreamsInfo
		hdr = append(hdr, 0x05)                      // FilesInfo: one file, its name
		hdr = append(hdr, num(1)...)
		hdr = append(hdr, 0x11)
		hdr = append(hdr, num(uint64(len(utf)+1))...)
		hdr = append(hdr, 0x00)
		hdr = append(hdr, utf...)
		hdr = append(hdr, 0x00, 0x00) // end of FilesInfo, of Header
	}

	start := binary.LittleEndian.AppendUint64(nil, uint64(len(packed)))
	start = binary.LittleEndian.AppendUint64(start, uint64(len(hdr)))
	start = binary.LittleEndian.AppendUint32(start, crc32.ChecksumIEEE(hdr))
	out := []byte("7z\xbc\xaf\x27\x1c\x00\x04")
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(start))
	out = append(out, start...)
	out = append(out, packed...)
	return append(out, hdr...)
}

// num encodes a 7z NUMBER: one byte below 0x80, else 0xff and 8 bytes.
func num(v uint64) []byte {
	if v < 0x80 {
		return []byte{byte(v)}
	}
	return binary.LittleEndian.AppendUint64([]byte{0xff}, v)
}
