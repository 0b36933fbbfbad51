package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
)

func (w *walker) walkTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // only with GODEBUG=tarinsecurepath=0; names are just strings here
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if cerr := w.ctx.Err(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("%w: tar: %w", ErrCorrupt, err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, '\x00', tar.TypeCont, tar.TypeGNUSparse:
		default:
			// directories, links, devices, fifos, and any unknown type
			w.res.Skipped++
			continue
		}
		e := Entry{Name: SanitizeName(hdr.Name), Size: hdr.Size}
		if err := w.deliver(e, tr); err != nil {
			return err
		}
	}
}
