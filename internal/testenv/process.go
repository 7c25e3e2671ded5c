package testenv

import (
	"io"
	"os/exec"
)

// StartPiped starts cmd with pipes to its standard input and from its standard output (for a child process that
// announces its address on stdout and stops when stdin closes).
func StartPiped(cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser, err error) {
	if stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, err
	}
	if stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, nil, err
	}
	if err = cmd.Start(); err != nil {
		return nil, nil, err
	}
	return stdin, stdout, nil
}
