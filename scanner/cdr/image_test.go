package cdr

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func runSanitizer(t testing.TB, s Sanitizer, in []byte) (Result, []byte) {
	t.Helper()
	var out bytes.Buffer
	res, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
	if err != nil {
		t.Fatalf("Sanitize: %v", err)
	}
	if res.Action != Sanitized {
		t.Fatalf("Action = %q", res.Action)
	}
	return res, out.Bytes()
}

func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := uint8(r.IntN(32))
			img.SetRGBA(x, y, color.RGBA{uint8(x*255/w) ^ n, uint8(y*255/h) + n, uint8((x + y) % 256), 255})
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// exifTIFF builds a little-endian TIFF with IFD0 {Orientation, GPS IFD
// pointer}, a GPS IFD {version, N, latitude 48/1 51/1 2400/100} and a
// non-zero next-IFD offset (a thumbnail IFD1).
func exifTIFF(orientation uint16) []byte {
	le := binary.LittleEndian
	var b []byte
	b = append(b, 'I', 'I', 42, 0)
	b = le.AppendUint32(b, 8)
	entry := func(tag, typ uint16, count, val uint32) {
		b = le.AppendUint16(b, tag)
		b = le.AppendUint16(b, typ)
		b = le.AppendUint32(b, count)
		b = le.AppendUint32(b, val)
	}
	// IFD0 at 8: 2 entries (2+24) + next(4) = 30 bytes -> GPS IFD at 38.
	b = le.AppendUint16(b, 2)
	entry(0x0112, 3, 1, uint32(orientation))
	entry(0x8825, 4, 1, 38)
	ifd1 := uint32(38 + 2 + 3*12 + 4 + 24)
	b = le.AppendUint32(b, ifd1)
	// GPS IFD at 38: 3 entries, latitude rationals after it.
	b = le.AppendUint16(b, 3)
	entry(0x0000, 1, 4, 0x00000302)
	entry(0x0001, 2, 2, 'N')
	entry(0x0002, 5, 3, 38+2+3*12+4)
	b = le.AppendUint32(b, 0)
	for _, v := range []uint32{48, 1, 51, 1, 2400, 100} {
		b = le.AppendUint32(b, v)
	}
	// IFD1: empty
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0)
	return b
}

func jpegSegment(marker byte, payload []byte) []byte {
	seg := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

// jpegMarkers lists the markers before SOS and reports whether the file
// ends right after EOI.
func jpegMarkers(t *testing.T, b []byte) []byte {
	t.Helper()
	var ms []byte
	i := 2
	for i+4 <= len(b) && b[i] == 0xFF {
		m := b[i+1]
		ms = append(ms, m)
		if m == 0xDA {
			break
		}
		i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
	}
	return ms
}

func TestImageJPEGExifGPSTrailing(t *testing.T) {
	src := encodeJPEG(t, testImage(64, 48))
	var in []byte
	in = append(in, src[:2]...)
	in = append(in, jpegSegment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(1)...))...)
	in = append(in, jpegSegment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))...)
	in = append(in, jpegSegment(0xFE, []byte("secret comment"))...)
	in = append(in, src[2:]...)
	in = append(in, []byte("PK\x03\x04appended zip payload")...)

	res, out := runSanitizer(t, &ImageSanitizer{}, in)
	if res.ConvertedTo != "jpg" {
		t.Errorf("ConvertedTo = %q", res.ConvertedTo)
	}
	for _, want := range []string{"exif", "gps", "thumbnail", "xmp", "comment", "trailing data"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed = %q, missing %q", res.Removed, want)
		}
	}
	img, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("bounds %v", b)
	}
	for _, m := range jpegMarkers(t, out) {
		if m == 0xE1 || m == 0xFE {
			t.Errorf("output still has marker %#x", m)
		}
	}
	for _, s := range []string{"Exif", "xmpmeta", "secret", "PK\x03\x04"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("output contains %q", s)
		}
	}
	if !bytes.HasSuffix(out, []byte{0xFF, 0xD9}) {
		t.Errorf("output does not end at EOI")
	}
}

func TestImageJPEGOrientationApplied(t *testing.T) {
	// left half red, right half blue; orientation 6 = rotate 90° clockwise
	src := image.NewRGBA(image.Rect(0, 0, 64, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 64; x++ {
			c := color.RGBA{255, 0, 0, 255}
			if x >= 32 {
				c = color.RGBA{0, 0, 255, 255}
			}
			src.SetRGBA(x, y, c)
		}
	}
	j := encodeJPEG(t, src)
	in := append(append(append([]byte{}, j[:2]...), jpegSegment(0xE1, append([]byte("Exif\x00\x00"), exifTIFF(6)...))...), j[2:]...)
	_, out := runSanitizer(t, &ImageSanitizer{}, in)
	img, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 64 {
		t.Fatalf("bounds %v, want 32x64", b)
	}
	r, _, b, _ := img.At(16, 10).RGBA()
	if r < b {
		t.Errorf("top should be red (was the left), got r=%d b=%d", r>>8, b>>8)
	}
	r, _, b, _ = img.At(16, 54).RGBA()
	if r > b {
		t.Errorf("bottom should be blue, got r=%d b=%d", r>>8, b>>8)
	}
}

func pngChunk(typ string, data []byte) []byte {
	var c []byte
	c = binary.BigEndian.AppendUint32(c, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

func pngChunkTypes(t *testing.T, b []byte) (types []string, rest int) {
	t.Helper()
	i := 8
	for i+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		types = append(types, typ)
		i += 12 + n
		if typ == "IEND" {
			break
		}
	}
	return types, len(b) - i
}

func TestImagePNGTextTrailing(t *testing.T) {
	src := testImage(40, 30)
	var enc bytes.Buffer
	if err := png.Encode(&enc, src); err != nil {
		t.Fatal(err)
	}
	p := enc.Bytes()
	ihdrEnd := 8 + 12 + 13
	var in []byte
	in = append(in, p[:ihdrEnd]...)
	in = append(in, pngChunk("tEXt", []byte("Comment\x00<script>alert(1)</script>"))...)
	in = append(in, pngChunk("eXIf", exifTIFF(1))...)
	in = append(in, p[ihdrEnd:]...)
	in = append(in, "trailing garbage"...)

	res, out := runSanitizer(t, &ImageSanitizer{}, in)
	if res.ConvertedTo != "png" {
		t.Errorf("ConvertedTo = %q", res.ConvertedTo)
	}
	for _, want := range []string{"text", "exif", "trailing data"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed = %q, missing %q", res.Removed, want)
		}
	}
	types, rest := pngChunkTypes(t, out)
	for _, typ := range types {
		if typ != "IHDR" && typ != "IDAT" && typ != "IEND" && typ != "PLTE" {
			t.Errorf("output has chunk %s", typ)
		}
	}
	if rest != 0 {
		t.Errorf("%d bytes after IEND", rest)
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range []image.Point{{0, 0}, {17, 9}, {39, 29}} {
		if img.At(pt.X, pt.Y) != color.Color(src.RGBAAt(pt.X, pt.Y)) {
			if a, b := color.RGBAModel.Convert(img.At(pt.X, pt.Y)), src.At(pt.X, pt.Y); a != b {
				t.Errorf("pixel %v: %v != %v", pt, a, b)
			}
		}
	}
}

func testGIF(frames int) *gif.GIF {
	g := &gif.GIF{LoopCount: 3}
	for i := 0; i < frames; i++ {
		f := image.NewPaletted(image.Rect(0, 0, 32, 24), palette.Plan9)
		for y := 0; y < 24; y++ {
			for x := 0; x < 32; x++ {
				f.SetColorIndex(x, y, uint8((x+y+i*40)%256))
			}
		}
		g.Image = append(g.Image, f)
		g.Delay = append(g.Delay, 10*(i+1))
		g.Disposal = append(g.Disposal, []byte{gif.DisposalNone, gif.DisposalBackground, gif.DisposalPrevious}[i%3])
	}
	return g
}

func TestImageGIFAnimated(t *testing.T) {
	g := testGIF(3)
	var enc bytes.Buffer
	if err := gif.EncodeAll(&enc, g); err != nil {
		t.Fatal(err)
	}
	b := enc.Bytes()
	// Insert a comment extension after the header + global color table.
	cut := 13
	if b[10]&0x80 != 0 {
		cut += 3 << (b[10]&7 + 1)
	}
	var in []byte
	in = append(in, b[:cut]...)
	in = append(in, 0x21, 0xFE, 5, 'h', 'e', 'l', 'l', 'o', 0)
	in = append(in, b[cut:]...)
	in = append(in, "trailer junk"...)

	res, out := runSanitizer(t, &ImageSanitizer{}, in)
	if res.ConvertedTo != "gif" {
		t.Errorf("ConvertedTo = %q", res.ConvertedTo)
	}
	for _, want := range []string{"comment", "trailing data"} {
		if !slices.Contains(res.Removed, want) {
			t.Errorf("Removed = %q, missing %q", res.Removed, want)
		}
	}
	got, err := gif.DecodeAll(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Image) != 3 {
		t.Fatalf("%d frames", len(got.Image))
	}
	if !slices.Equal(got.Delay, g.Delay) || !slices.Equal(got.Disposal, g.Disposal) || got.LoopCount != g.LoopCount {
		t.Errorf("timing lost: delay %v disposal %v loop %d", got.Delay, got.Disposal, got.LoopCount)
	}
	if bytes.Contains(out, []byte("hello")) || !bytes.HasSuffix(out, []byte{0x3B}) {
		t.Errorf("comment or trailing data survived")
	}
}

func TestImageRefusesHugeDimensions(t *testing.T) {
	s := &ImageSanitizer{}
	check := func(name string, in []byte) {
		t.Helper()
		var out bytes.Buffer
		start := time.Now()
		_, err := s.Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
		if !errors.Is(err, ErrImageTooLarge) {
			t.Errorf("%s: err = %v, want ErrImageTooLarge", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refusal took %v", name, d)
		}
	}
	// PNG declaring 100000 x 100000.
	ihdr := binary.BigEndian.AppendUint32(nil, 100000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 100000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	p := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	p = append(p, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	p = append(p, pngChunk("IEND", nil)...)
	check("png", p)

	// JPEG with its SOF0 patched to 65000 x 65000.
	j := encodeJPEG(t, testImage(16, 16))
	i := bytes.Index(j, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0")
	}
	binary.BigEndian.PutUint16(j[i+5:], 65000)
	binary.BigEndian.PutUint16(j[i+7:], 65000)
	check("jpeg", j)

	// GIF: many frames under a small budget.
	var enc bytes.Buffer
	gif.EncodeAll(&enc, testGIF(50))
	small := &ImageSanitizer{MaxPixels: 32 * 24 * 10}
	_, err := small.Sanitize(context.Background(), bytes.NewReader(enc.Bytes()), int64(enc.Len()), &bytes.Buffer{})
	if !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("gif frames: err = %v", err)
	}
}

// A truncated or corrupted image is not sanitized: Sanitize fails with an
// error that names the format (so the scan reports the file as not
// sanitized) and writes nothing. A corruption that still decodes may only
// come out as a clean image of the same format and size.
func TestImageTruncatedAndCorrupt(t *testing.T) {
	var pngb, gifb bytes.Buffer
	png.Encode(&pngb, testImage(20, 20))
	gif.EncodeAll(&gifb, testGIF(2))
	for _, tt := range []struct {
		format, ext string
		src         []byte
		config      func(io.Reader) (image.Config, error)
	}{
		{"jpeg", "jpg", encodeJPEG(t, testImage(20, 20)), jpeg.DecodeConfig},
		{"png", "png", pngb.Bytes(), png.DecodeConfig},
		{"gif", "gif", gifb.Bytes(), gif.DecodeConfig},
	} {
		sanitize := func(in []byte) (Result, []byte, error) {
			var out bytes.Buffer
			res, err := (&ImageSanitizer{}).Sanitize(context.Background(), bytes.NewReader(in), int64(len(in)), &out)
			return res, out.Bytes(), err
		}
		want, err := tt.config(bytes.NewReader(tt.src))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := sanitize(tt.src); err != nil {
			t.Fatalf("%s: the intact image: %v", tt.format, err)
		}
		refused := func(what string, res Result, out []byte, err error) {
			t.Helper()
			switch {
			case err == nil:
				t.Errorf("%s %s: sanitized (%+v, %d bytes), want an error", tt.format, what, res, len(out))
			case !strings.HasPrefix(err.Error(), "cdr: "+tt.format+": ") && !strings.HasPrefix(err.Error(), "cdr: image: "):
				t.Errorf("%s %s: error %q does not name the format", tt.format, what, err)
			case errors.Is(err, ErrImageTooLarge):
				t.Errorf("%s %s: reported as too large: %v", tt.format, what, err)
			case res.Action != "" || len(out) != 0:
				t.Errorf("%s %s: error %v with result %+v and %d bytes written", tt.format, what, err, res, len(out))
			}
		}
		for n := 0; n < len(tt.src); n++ {
			res, out, err := sanitize(tt.src[:n])
			refused(fmt.Sprintf("cut at %d of %d bytes", n, len(tt.src)), res, out, err)
		}
		for step := 3; step < 40; step++ {
			bad := bytes.Clone(tt.src)
			for i := 20; i < len(bad); i += step {
				bad[i] ^= 0x5A
			}
			res, out, err := sanitize(bad)
			if err != nil {
				refused(fmt.Sprintf("corrupted every %d bytes", step), res, out, err)
				continue
			}
			got, gerr := tt.config(bytes.NewReader(out))
			if gerr != nil || got.Width != want.Width || got.Height != want.Height || res.ConvertedTo != tt.ext {
				t.Errorf("%s corrupted every %d bytes: sanitized to %+v, %d bytes (%v)", tt.format, step, res, len(out), gerr)
			}
		}
	}
}

func TestImageRegistry(t *testing.T) {
	for _, m := range []string{"image/jpeg", "image/png", "image/gif", "IMAGE/PNG; x=y"} {
		if s, ok := For(m); !ok {
			t.Errorf("no sanitizer for %s", m)
		} else if _, ok := s.(*ImageSanitizer); !ok {
			t.Errorf("%s: %T", m, s)
		}
	}
	// Not an image at all.
	_, err := (&ImageSanitizer{}).Sanitize(context.Background(), bytes.NewReader([]byte("hello")), 5, &bytes.Buffer{})
	if err == nil {
		t.Error("accepted non-image")
	}
}

func BenchmarkImageSanitizeJPEG20MP(b *testing.B) {
	const w, h = 5472, 3648
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	r := rand.New(rand.NewPCG(3, 4))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Y[y*img.YStride+x] = uint8(x*200/w + r.IntN(48))
		}
	}
	for y := 0; y < h/2; y++ {
		for x := 0; x < w/2; x++ {
			img.Cb[y*img.CStride+x] = uint8(64 + y*128/(h/2))
			img.Cr[y*img.CStride+x] = uint8(64 + x*128/(w/2) + r.IntN(8))
		}
	}
	var enc bytes.Buffer
	if err := jpeg.Encode(&enc, img, &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	data := enc.Bytes()
	s := &ImageSanitizer{}
	var decode time.Duration
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Sanitize(context.Background(), bytes.NewReader(data), int64(len(data)), io.Discard); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		t0 := time.Now()
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		decode += time.Since(t0)
		b.StartTimer()
	}
	mb := float64(len(data)) / 1e6 * float64(b.N)
	b.ReportMetric(mb/decode.Seconds(), "decode-only-MB/s")
	b.ReportMetric(float64(len(data))/1e6, "input-MB")
}
