package cdr

// Raster images: JPEG, PNG and GIF are decoded and re-encoded with the
// standard library. Only pixels (and, for GIF, the frame timing and loop
// count) survive: EXIF/GPS/XMP/IPTC/ICC/comments, private chunks and
// anything appended after the image end are dropped. The container is
// walked once first, cheaply, to find the real end of the image and to
// report what is being dropped; the decoder then reads only up to that end.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
)

// DefaultMaxImagePixels is the decompression-bomb limit used when
// ImageSanitizer.MaxPixels is zero: 100 megapixels (for GIF, summed over
// all frames).
const DefaultMaxImagePixels = 100_000_000

// ErrImageTooLarge: the declared dimensions exceed the pixel limit, or
// the decoded pixels would exceed the memory budget (the error then wraps
// ErrMemoryBudget too). The image is refused before any pixel buffer is
// allocated.
var ErrImageTooLarge = errors.New("cdr: image too large")

// ImageSanitizer rewrites JPEG, PNG and GIF. The real format is taken from
// the magic bytes, not from the MIME type it was registered for, so a PNG
// labelled image/jpeg comes out as a PNG (ConvertedTo "png").
type ImageSanitizer struct {
	// MaxPixels bounds width*height (GIF: the logical screen and the sum of
	// all frames). 0 means DefaultMaxImagePixels. The context's memory
	// budget (WithMemoryBudget) bounds the bytes of the decoded pixels too:
	// 1-8 a pixel by color model for JPEG and PNG (8 more for a JPEG that
	// is re-oriented), 1 for GIF.
	MaxPixels int64
	// Quality of the re-encoded JPEG, 1-100; 0 means 90.
	Quality int
}

func init() {
	s := &ImageSanitizer{}
	Register(s, "image/jpeg", "image/pjpeg", "image/jpg", "image/png", "image/gif")
}

func (s *ImageSanitizer) maxPixels() int64 {
	if s.MaxPixels > 0 {
		return s.MaxPixels
	}
	return DefaultMaxImagePixels
}

// Sanitize implements Sanitizer.
func (s *ImageSanitizer) Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	var magic [8]byte
	n, _ := in.ReadAt(magic[:], 0)
	m := magic[:n]
	switch {
	case bytes.HasPrefix(m, []byte{0xFF, 0xD8, 0xFF}):
		return s.sanitizeJPEG(ctx, in, size, w)
	case bytes.HasPrefix(m, []byte("\x89PNG\r\n\x1a\n")):
		return s.sanitizePNG(ctx, in, size, w)
	case bytes.HasPrefix(m, []byte("GIF87a")), bytes.HasPrefix(m, []byte("GIF89a")):
		return s.sanitizeGIF(ctx, in, size, w)
	}
	return Result{}, errors.New("cdr: image: not a JPEG, PNG or GIF file")
}

// checkPixels refuses configs over the budget (and empty images).
func (s *ImageSanitizer) checkPixels(format string, cfg image.Config) error {
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fmt.Errorf("cdr: %s: empty image (%dx%d)", format, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > s.maxPixels() {
		return fmt.Errorf("%w: %s %dx%d = %d pixels, limit %d", ErrImageTooLarge, format, cfg.Width, cfg.Height, px, s.maxPixels())
	}
	return nil
}

// decodeChecked decodes the image in the first end bytes of in, refusing
// it by its declared size before any pixel is decoded: over the pixel
// limit, or over the memory budget once decoded (at its color model's
// depth, plus extra bytes per pixel for copies made afterwards).
func (s *ImageSanitizer) decodeChecked(ctx context.Context, format string, in io.ReaderAt, end, extra int64,
	config func(io.Reader) (image.Config, error), decode func(io.Reader) (image.Image, error)) (image.Image, error) {
	cfg, err := config(imageSection(in, end))
	if err != nil {
		return nil, fmt.Errorf("cdr: %s: %w", format, err)
	}
	if err := s.checkPixels(format, cfg); err != nil {
		return nil, err
	}
	need := int64(cfg.Width) * int64(cfg.Height) * (bytesPerPixel(cfg.ColorModel) + extra)
	if budget := memoryBudget(ctx); need > budget {
		return nil, fmt.Errorf("%w: %w: %s %dx%d needs %d bytes to decode, budget %d",
			ErrImageTooLarge, ErrMemoryBudget, format, cfg.Width, cfg.Height, need, budget)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img, err := decode(imageSection(in, end))
	if err != nil {
		return nil, fmt.Errorf("cdr: %s: %w", format, err)
	}
	return img, nil
}

// bytesPerPixel is the depth of the image the standard decoders return
// for a color model (JPEG's YCbCr counted at 4:4:4, its largest).
func bytesPerPixel(m color.Model) int64 {
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	}
	return 4
}

func imageSection(in io.ReaderAt, n int64) *bufio.Reader {
	return bufio.NewReaderSize(io.NewSectionReader(in, 0, n), 64<<10)
}

// ---------------------------------------------------------------- JPEG

func (s *ImageSanitizer) sanitizeJPEG(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	info, err := scanJPEG(imageSection(in, size))
	if err != nil {
		return Result{}, err
	}
	end := size
	if info.end > 0 {
		end = info.end
		if end < size {
			info.removed.add("trailing data")
		}
	}
	oriented := info.orientation > 1 && info.orientation <= 8
	var extra int64
	if oriented {
		extra = 8 // orientImage: an RGBA copy, then the rotated RGBA
	}
	img, err := s.decodeChecked(ctx, "jpeg", in, end, extra, jpeg.DecodeConfig, jpeg.Decode)
	if err != nil {
		return Result{}, err
	}
	if oriented {
		// The EXIF block that told viewers how to rotate is going away,
		// so bake the rotation into the pixels.
		img = orientImage(img, info.orientation)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	q := s.Quality
	if q <= 0 || q > 100 {
		q = 90
	}
	if err := jpeg.Encode(w, img, &jpeg.Options{Quality: q}); err != nil {
		return Result{}, fmt.Errorf("cdr: jpeg: encode: %w", err)
	}
	return Result{Action: Sanitized, ConvertedTo: "jpg", Removed: info.removed}, nil
}

type jpegInfo struct {
	end         int64 // offset just past EOI; 0 if not found (truncated)
	orientation int   // EXIF orientation, 0 if none
	removed     removalLog
}

// imagePosReader is a bufio.Reader that knows its offset.
type imagePosReader struct {
	br  *bufio.Reader
	pos int64
}

func (p *imagePosReader) byte() (byte, error) {
	c, err := p.br.ReadByte()
	if err == nil {
		p.pos++
	}
	return c, err
}

func (p *imagePosReader) discard(n int) error {
	m, err := p.br.Discard(n)
	p.pos += int64(m)
	return err
}

func (p *imagePosReader) full(b []byte) error {
	n, err := io.ReadFull(p.br, b)
	p.pos += int64(n)
	return err
}

// skipTo advances to the next occurrence of c without consuming it.
func (p *imagePosReader) skipTo(c byte) error {
	for {
		if p.br.Buffered() == 0 {
			if _, err := p.br.Peek(1); err != nil {
				return err
			}
		}
		b, _ := p.br.Peek(p.br.Buffered())
		if i := bytes.IndexByte(b, c); i >= 0 {
			return p.discard(i)
		}
		if err := p.discard(len(b)); err != nil {
			return err
		}
	}
}

// scanJPEG walks the marker segments (and the entropy-coded data after
// each SOS) up to EOI. A truncated file is not an error here: the decoder
// will judge it; end is then 0.
func scanJPEG(br *bufio.Reader) (jpegInfo, error) {
	var info jpegInfo
	p := &imagePosReader{br: br}
	var soi [2]byte
	if err := p.full(soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return info, errors.New("cdr: jpeg: missing SOI marker")
	}
	var m byte
	pending := false
	for {
		if !pending {
			// Like libjpeg (and image/jpeg), skip junk before the 0xFF.
			if err := p.skipTo(0xFF); err != nil {
				return info, nil
			}
			c, err := p.byte()
			for err == nil && c == 0xFF {
				c, err = p.byte()
			}
			if err != nil {
				return info, nil
			}
			m = c
		}
		pending = false
		switch {
		case m == 0xD9: // EOI
			info.end = p.pos
			return info, nil
		case m == 0x00, m == 0x01, m == 0xD8, m >= 0xD0 && m <= 0xD7:
			continue // standalone markers
		}
		var lb [2]byte
		if err := p.full(lb[:]); err != nil {
			return info, nil
		}
		n := int(binary.BigEndian.Uint16(lb[:])) - 2
		if n < 0 {
			return info, errors.New("cdr: jpeg: bad segment length")
		}
		var err error
		switch {
		case m == 0xE1: // APP1: Exif or XMP
			seg := make([]byte, n)
			if err = p.full(seg); err == nil {
				switch {
				case bytes.HasPrefix(seg, []byte("Exif\x00")):
					info.removed.add("exif")
					o, gps, thumb := parseExif(seg[6:])
					if info.orientation == 0 {
						info.orientation = o
					}
					if gps {
						info.removed.add("gps")
					}
					if thumb {
						info.removed.add("thumbnail")
					}
				case bytes.HasPrefix(seg, []byte("http://ns.adobe.com/xap/1.0/")),
					bytes.HasPrefix(seg, []byte("http://ns.adobe.com/xmp/extension/")):
					info.removed.add("xmp")
				default:
					info.removed.add("app1")
				}
			}
		case m == 0xE2, m == 0xED, m == 0xFE, m >= 0xE3 && m <= 0xEF && m != 0xEE:
			head := make([]byte, min(n, 16))
			if err = p.full(head); err == nil {
				err = p.discard(n - len(head))
			}
			switch {
			case m == 0xFE:
				info.removed.add("comment")
			case m == 0xE2 && bytes.HasPrefix(head, []byte("ICC_PROFILE\x00")):
				info.removed.add("icc profile")
			case m == 0xE2 && bytes.HasPrefix(head, []byte("MPF\x00")):
				info.removed.add("mpf")
			case m == 0xED && bytes.HasPrefix(head, []byte("Photoshop 3.0")):
				info.removed.add("iptc")
			default:
				info.removed.add(fmt.Sprintf("app%d", m-0xE0))
			}
		default: // APP0 (JFIF), APP14 (Adobe), tables, SOFn, SOS header...
			err = p.discard(n)
		}
		if err != nil {
			return info, nil
		}
		if m != 0xDA {
			continue
		}
		// Entropy-coded data: 0xFF00 is a stuffed byte and 0xFFD0-D7 are
		// restart markers; anything else is the next marker.
		for {
			if p.skipTo(0xFF) != nil {
				return info, nil
			}
			c, err := p.byte()
			for err == nil && c == 0xFF {
				c, err = p.byte()
			}
			if err != nil {
				return info, nil
			}
			if c == 0x00 || c >= 0xD0 && c <= 0xD7 {
				continue
			}
			m, pending = c, true
			break
		}
	}
}

// parseExif reads IFD0 of a TIFF structure: the orientation tag, whether a
// GPS IFD pointer is present and whether IFD1 (the thumbnail) follows.
func parseExif(t []byte) (orientation int, gps, thumbnail bool) {
	if len(t) < 8 {
		return
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return
	}
	if bo.Uint16(t[2:]) != 42 {
		return
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return
	}
	count := int64(bo.Uint16(t[off:]))
	p := off + 2
	for i := int64(0); i < count && p+12 <= int64(len(t)); i, p = i+1, p+12 {
		e := t[p : p+12]
		switch bo.Uint16(e) {
		case 0x0112: // Orientation, SHORT
			if bo.Uint16(e[2:]) == 3 {
				orientation = int(bo.Uint16(e[8:]))
			}
		case 0x8825: // GPSInfo IFD pointer
			gps = true
		}
	}
	if p+4 <= int64(len(t)) && p == off+2+12*count && bo.Uint32(t[p:]) != 0 {
		thumbnail = true
	}
	return
}

// orientImage applies an EXIF orientation (2-8) to the pixels.
func orientImage(src image.Image, o int) image.Image {
	b := src.Bounds()
	var pix []byte
	var stride, bpp int
	var gray *image.Gray
	var rgba *image.RGBA
	if g, ok := src.(*image.Gray); ok {
		gray = image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
		draw.Draw(gray, gray.Bounds(), g, b.Min, draw.Src)
		pix, stride, bpp = gray.Pix, gray.Stride, 1
	} else {
		rgba = image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
		draw.Draw(rgba, rgba.Bounds(), src, b.Min, draw.Src)
		pix, stride, bpp = rgba.Pix, rgba.Stride, 4
	}
	w, h := b.Dx(), b.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	out := make([]byte, dw*dh*bpp)
	for y := 0; y < dh; y++ {
		row := out[y*dw*bpp:]
		for x := 0; x < dw; x++ {
			var sx, sy int
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, h-1-x
			case 7:
				sx, sy = w-1-y, h-1-x
			case 8:
				sx, sy = w-1-y, x
			}
			copy(row[x*bpp:x*bpp+bpp], pix[sy*stride+sx*bpp:])
		}
	}
	r := image.Rect(0, 0, dw, dh)
	if gray != nil {
		return &image.Gray{Pix: out, Stride: dw, Rect: r}
	}
	return &image.RGBA{Pix: out, Stride: dw * 4, Rect: r}
}

// ---------------------------------------------------------------- PNG

var pngStandardAncillary = map[string]bool{
	"tRNS": true, "gAMA": true, "cHRM": true, "sRGB": true, "sBIT": true,
	"bKGD": true, "hIST": true, "pHYs": true, "sPLT": true, "tIME": true,
	"cICP": true, "mDCV": true, "cLLI": true, "fcTL": true, "fdAT": true,
}

func (s *ImageSanitizer) sanitizePNG(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	var removed removalLog
	p := &imagePosReader{br: imageSection(in, size)}
	if err := p.discard(8); err != nil {
		return Result{}, errors.New("cdr: png: truncated")
	}
	end := int64(0)
	var hdr [8]byte
	for p.full(hdr[:]) == nil {
		n := binary.BigEndian.Uint32(hdr[:4])
		typ := string(hdr[4:])
		if n > 1<<31-1 {
			return Result{}, errors.New("cdr: png: bad chunk length")
		}
		switch typ {
		case "tEXt", "zTXt", "iTXt":
			removed.add("text")
		case "eXIf":
			removed.add("exif")
		case "iCCP":
			removed.add("icc profile")
		case "acTL":
			removed.add("apng animation") // image/png decodes the default image only
		case "IHDR", "PLTE", "IDAT", "IEND":
		default:
			if typ[0]&0x20 != 0 && !pngStandardAncillary[typ] {
				removed.add("private chunk")
			}
		}
		if p.discard(int(n)+4) != nil {
			break
		}
		if typ == "IEND" {
			end = p.pos
			break
		}
	}
	if end == 0 {
		end = size
	} else if end < size {
		removed.add("trailing data")
	}
	img, err := s.decodeChecked(ctx, "png", in, end, 0, png.DecodeConfig, png.Decode)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := png.Encode(bw, img); err != nil {
		return Result{}, fmt.Errorf("cdr: png: encode: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Result{}, err
	}
	return Result{Action: Sanitized, ConvertedTo: "png", Removed: removed}, nil
}

// ---------------------------------------------------------------- GIF

func (s *ImageSanitizer) sanitizeGIF(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (Result, error) {
	cfg, err := gif.DecodeConfig(imageSection(in, size))
	if err != nil {
		return Result{}, fmt.Errorf("cdr: gif: %w", err)
	}
	if err := s.checkPixels("gif", cfg); err != nil {
		return Result{}, err
	}
	// gif.DecodeAll allocates every frame (one byte a pixel) before
	// returning, so the frame count x frame size budget has to be enforced
	// on a pre-scan.
	limit, over := s.maxPixels(), ErrImageTooLarge
	if budget := memoryBudget(ctx); budget < limit {
		limit, over = budget, fmt.Errorf("%w: %w", ErrImageTooLarge, ErrMemoryBudget)
	}
	end, removed, err := scanGIF(imageSection(in, size), limit, over)
	if err != nil {
		return Result{}, err
	}
	if end == 0 {
		end = size
	} else if end < size {
		removed.add("trailing data")
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	g, err := gif.DecodeAll(imageSection(in, end))
	if err != nil {
		return Result{}, fmt.Errorf("cdr: gif: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := gif.EncodeAll(w, g); err != nil {
		return Result{}, fmt.Errorf("cdr: gif: encode: %w", err)
	}
	return Result{Action: Sanitized, ConvertedTo: "gif", Removed: removed}, nil
}

// scanGIF walks the block structure: it sums the frame areas against
// limit (failing with over), notes comment/plain-text/application
// extensions, and returns the offset just past the trailer (0 if the file
// is truncated).
func scanGIF(br *bufio.Reader, limit int64, over error) (end int64, removed removalLog, err error) {
	p := &imagePosReader{br: br}
	var hdr [13]byte
	if err := p.full(hdr[:]); err != nil {
		return 0, nil, errors.New("cdr: gif: truncated header")
	}
	if hdr[10]&0x80 != 0 {
		if p.discard(3<<(hdr[10]&7+1)) != nil {
			return 0, removed, nil
		}
	}
	skipSubBlocks := func() error {
		for {
			n, err := p.byte()
			if err != nil || n == 0 {
				return err
			}
			if err := p.discard(int(n)); err != nil {
				return err
			}
		}
	}
	var pixels int64
	frames := 0
	for {
		b, err := p.byte()
		if err != nil {
			return 0, removed, nil
		}
		switch b {
		case 0x3B: // trailer
			return p.pos, removed, nil
		case 0x21: // extension
			label, err := p.byte()
			if err != nil {
				return 0, removed, nil
			}
			switch label {
			case 0xFE:
				removed.add("comment")
			case 0x01:
				removed.add("plain text extension")
			case 0xFF:
				n, err := p.byte()
				if err != nil {
					return 0, removed, nil
				}
				id := make([]byte, n)
				if p.full(id) != nil {
					return 0, removed, nil
				}
				switch {
				case bytes.HasPrefix(id, []byte("NETSCAPE2.0")), bytes.HasPrefix(id, []byte("ANIMEXTS1.0")):
				case bytes.HasPrefix(id, []byte("XMP DataXMP")):
					removed.add("xmp")
				case bytes.HasPrefix(id, []byte("ICCRGBG1012")):
					removed.add("icc profile")
				default:
					removed.add("application extension")
				}
			}
			if skipSubBlocks() != nil {
				return 0, removed, nil
			}
		case 0x2C: // image descriptor
			var d [9]byte
			if p.full(d[:]) != nil {
				return 0, removed, nil
			}
			frames++
			fw, fh := int64(binary.LittleEndian.Uint16(d[4:])), int64(binary.LittleEndian.Uint16(d[6:]))
			pixels += max(fw*fh, 1)
			if pixels > limit {
				return 0, nil, fmt.Errorf("%w: gif: %d frames total over %d pixels", over, frames, limit)
			}
			if d[8]&0x80 != 0 {
				if p.discard(3<<(d[8]&7+1)) != nil {
					return 0, removed, nil
				}
			}
			if _, err := p.byte(); err != nil { // LZW minimum code size
				return 0, removed, nil
			}
			if skipSubBlocks() != nil {
				return 0, removed, nil
			}
		default:
			return 0, nil, fmt.Errorf("cdr: gif: unknown block type 0x%02x", b)
		}
	}
}

// ---------------------------------------------------------------- shared

// removalLog is Result.Removed without duplicates, in first-seen order.
type removalLog []string

func (r *removalLog) add(what string) {
	for _, x := range *r {
		if x == what {
			return
		}
	}
	*r = append(*r, what)
}
