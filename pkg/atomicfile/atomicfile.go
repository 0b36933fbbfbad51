// Package atomicfile writes small files that must be whole or absent after
// a crash: generated keys and certificates, state files. renameio covers
// replacing a file; this adds creating one only if it is not there yet.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// WriteNew stores data at path unless a file is already there, and reports
// whether it wrote it. The bytes are fsynced under a temporary name and
// linked into place (a link never replaces: of two processes starting at
// once, one file wins and both read it), then the directory is fsynced so
// the name survives a crash too.
func WriteNew(path string, data []byte, mode os.FileMode) (written bool, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
