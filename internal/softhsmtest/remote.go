package softhsmtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RemoteTokenLabel is the token a Remote serves. It lives in a token directory of its own, which only the server's
// processes open, never the test process.
const RemoteTokenLabel = "blindfold-remote"

// EnvServerAddress is the variable p11-kit-client.so reads, at C_Initialize, to find its server.
const EnvServerAddress = "P11_KIT_SERVER_ADDRESS"

// ErrRemoteMissing: p11-kit's remoting (the p11-kit server, and the client module) is not installed.
var ErrRemoteMissing = errors.New("p11-kit remoting not installed (apt-get install p11-kit p11-kit-modules)")

// Paths of p11-kit-client.so (Debian package p11-kit-modules), Debian's first.
var clientModulePaths = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
	"/usr/lib/pkcs11/p11-kit-client.so",
	"/usr/lib64/pkcs11/p11-kit-client.so",
}

// Remote is a SoftHSM2 token served over a unix socket by `p11-kit server` (Debian package p11-kit), which is how a
// network HSM looks to an application: the application loads a client module (p11-kit-client.so, Debian package
// p11-kit-modules) that forwards every PKCS#11 call to the server, which runs SoftHSM2. Stop kills the server with every
// process it forked (SIGKILL: the HSM goes away, its connections break); Start brings it back on the same socket and
// token.
//
// Limitation: p11-kit 0.24 (Debian 12) forwards no mechanism parameters of AES-GCM, so C_EncryptInit with CKM_AES_GCM
// answers CKR_MECHANISM_INVALID through it: the KEK can find, create and destroy its key through a Remote, but not wrap.
type Remote struct {
	// ClientModule is the path of p11-kit-client.so, the module a KEK loads to reach the token.
	ClientModule string
	// Address is the server's address in p11-kit's syntax (unix:path=…), the value of EnvServerAddress.
	Address string
	// Socket is the path of the server's unix socket.
	Socket string

	p11kit, provider, conf string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRemote initializes RemoteTokenLabel (with PIN) in a token directory under dir, starts a p11-kit server for it,
// and sets EnvServerAddress for this process. Call it from TestMain, before any PKCS#11 module is initialized: the
// variable is read by C code, and setting it while other threads may read the environment is not safe.
func StartRemote(dir string) (*Remote, error) {
	mod, util, err := findSoftHSM()
	if err != nil {
		return nil, err
	}
	p11kit, err := exec.LookPath("p11-kit")
	client := ""
	for _, p := range clientModulePaths {
		if _, serr := os.Stat(p); serr == nil {
			client = p
			break
		}
	}
	if err != nil || client == "" {
		return nil, ErrRemoteMissing
	}
	tokens := filepath.Join(dir, "remote-tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm remote: %w", err)
	}
	conf := filepath.Join(dir, "remote-softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm remote: %w", err)
	}
	cmd := exec.Command(util, "--init-token", "--free", "--label", RemoteTokenLabel, "--pin", PIN, "--so-pin", soPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %w\n%s", err, b)
	}
	socket := filepath.Join(dir, "p11kit.sock")
	if len(socket) > 100 { // sun_path holds 108 bytes
		return nil, fmt.Errorf("softhsm remote: socket path %s too long for a unix socket (set TMPDIR shorter)", socket)
	}
	r := &Remote{ClientModule: client, Address: "unix:path=" + socket, Socket: socket, p11kit: p11kit, provider: mod, conf: conf}
	if err := os.Setenv(EnvServerAddress, r.Address); err != nil {
		return nil, err
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Start starts the server (first, or after Stop) and returns once its socket accepts connections.
func (r *Remote) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		select {
		case <-r.done:
		default:
			return errors.New("softhsm remote: p11-kit server already running")
		}
	}
	cmd := exec.Command(r.p11kit, "server", "--foreground", "--provider", r.provider, "--name", r.Socket,
		"pkcs11:token="+RemoteTokenLabel)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+r.conf)
	// A process group of its own: the server forks a p11-kit-remote per connection, and Stop kills them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = io.Discard // the shell commands exporting its address
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("softhsm remote: start p11-kit server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.cmd, r.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", r.Socket)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("softhsm remote: p11-kit server exited: %s", strings.TrimSpace(stderr.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("softhsm remote: p11-kit server not listening on %s within 10s: %w", r.Socket, err)
		}
	}
}

// Stop kills the server and every process it forked (SIGKILL) and waits until they are gone.
func (r *Remote) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kill()
	return nil
}

// Pause stops the server and every process it forked (SIGSTOP): a network HSM that stops answering, its connections
// open. Resume continues them.
func (r *Remote) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (r *Remote) Resume() error { return r.signal(syscall.SIGCONT) }

func (r *Remote) signal(sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return errors.New("softhsmtest: the remote server is not running")
	}
	return syscall.Kill(-r.cmd.Process.Pid, sig)
}

func (r *Remote) kill() {
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done // Wait returns once the server is reaped and every holder of its stderr (its children) is gone
}

// Running reports whether the server is running.
func (r *Remote) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}
