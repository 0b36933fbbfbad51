package cdr

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

// hugeGIF is a GIF whose one frame declares w x h pixels, followed by LZW
// data that ends at once.
func hugeGIF(w, h uint16) []byte {
	b := []byte("GIF89a")
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	b = append(b, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff) // two-color table
	b = append(b, 0x2c, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	b = append(b, 0, 2, 1, 0x2c, 0, 0x3b) // no local table; clear, end of data; trailer
	return b
}

// An image whose decoded pixels would not fit the memory budget is
// refused from its header, before the pixel buffer is allocated, even
// when it is within the pixel limit.
func TestImageOverMemoryBudget(t *testing.T) {
	const budget = 32 << 20
	ihdr := binary.BigEndian.AppendUint32(nil, 5000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 5000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA: 100 MB decoded
	p := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	p = append(p, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	p = append(p, pngChunk("IEND", nil)...)

	j := encodeJPEG(t, testImage(16, 16)) // SOF0 patched to 8000 x 8000: 96 MB decoded
	i := bytes.Index(j, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0")
	}
	binary.BigEndian.PutUint16(j[i+5:], 8000)
	binary.BigEndian.PutUint16(j[i+7:], 8000)

	ctx := WithMemoryBudget(context.Background(), budget)
	for name, in := range map[string][]byte{"png": p, "jpeg": j, "gif": hugeGIF(9000, 9000)} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := (&ImageSanitizer{}).Sanitize(ctx, bytes.NewReader(in), int64(len(in)), &bytes.Buffer{})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrMemoryBudget) || !errors.Is(err, ErrImageTooLarge) {
				t.Errorf("err = %v, want ErrMemoryBudget and ErrImageTooLarge", err)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 2*budget {
				t.Errorf("allocated %d MiB, budget %d MiB", d>>20, budget>>20)
			}
		})
	}

	// The same budget lets an ordinary photo through.
	in := encodeJPEG(t, testImage(1024, 768))
	if res, err := (&ImageSanitizer{}).Sanitize(ctx, bytes.NewReader(in), int64(len(in)), &bytes.Buffer{}); err != nil || res.Action != Sanitized {
		t.Errorf("1024x768 jpeg: %+v, %v", res, err)
	}
}

// A PDF larger than the memory budget is refused before pdfcpu reads it.
func TestPDFOverMemoryBudget(t *testing.T) {
	in := pdfMalicious()
	ctx := WithMemoryBudget(context.Background(), int64(len(in)-1))
	_, err := PDFSanitizer{}.Sanitize(ctx, bytes.NewReader(in), int64(len(in)), &bytes.Buffer{})
	if !errors.Is(err, ErrPDFTooLarge) || !errors.Is(err, ErrMemoryBudget) {
		t.Errorf("err = %v, want ErrPDFTooLarge and ErrMemoryBudget", err)
	}
	ctx = WithMemoryBudget(context.Background(), int64(len(in)))
	if _, err := (PDFSanitizer{}).Sanitize(ctx, bytes.NewReader(in), int64(len(in)), &bytes.Buffer{}); err != nil {
		t.Errorf("within the budget: %v", err)
	}
}
