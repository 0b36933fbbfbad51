package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/scangate/scangate/pkg/auth"
)

// passwd reads a password on stdin and prints its password_hash for the
// config. On a terminal it asks without echo, twice; otherwise it reads
// one line, so scripts can pipe a password in. The password never appears
// on the command line, where other users of the host could read it.
func passwd(stdin io.Reader, stdout, stderr io.Writer) int {
	var pw string
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(prompt string) (string, error) {
			fmt.Fprint(stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(stderr)
			return string(b), err
		}
		a, err := read("Password: ")
		if err != nil {
			fmt.Fprintf(stderr, "scangate passwd: %v\n", err)
			return 1
		}
		b, err := read("Again: ")
		if err != nil {
			fmt.Fprintf(stderr, "scangate passwd: %v\n", err)
			return 1
		}
		if a != b {
			fmt.Fprintln(stderr, "scangate passwd: the passwords differ")
			return 1
		}
		pw = a
	} else {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintf(stderr, "scangate passwd: %v\n", err)
			return 1
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		fmt.Fprintln(stderr, "scangate passwd: empty password")
		return 2
	}
	if len(pw) > 72 {
		// bcrypt uses only the first 72 bytes: a longer one would be
		// accepted by its prefix alone.
		fmt.Fprintln(stderr, "scangate passwd: at most 72 bytes")
		return 2
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "scangate passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}
