package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// How run tells the uploader that the outputs are packed, and with which exit code. Not a file:
// the step's command runs as the same user in the same container as run, so anything run may
// write there the command may write too (a forged "exit code 0" would upload the outputs of a
// failed step despite uploadOnFailure: false). Instead the uploader listens on a socket of the
// outputs volume and accepts exactly one connection, which run opens before the command
// exists; the connection is not inherited by the command (close-on-exec), and run makes itself
// non-dumpable so the command can neither ptrace it nor open its descriptors through /proc.
// When run dies, the kernel closes the connection: the uploader learns that no marker is coming.
const (
	socketFile = "upload.sock"
	// How long run waits for the uploader (a container started beside it) to listen.
	connectWait = 2 * time.Minute
)

type outputSpec struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

type packResult struct {
	// packed, missing or failed
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

type doneMarker struct {
	ExitCode int                   `json:"exitCode"`
	Outputs  map[string]packResult `json:"outputs"`
}

func runMain(args []string) int {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	outputsJSON := flags.String("outputs", "[]", "JSON list of {name, path}")
	dir := flags.String("dir", "", "the outputs volume")
	maxBytes := flags.Int64("max-bytes", 0, "largest packed artifact (0: no limit)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	command := flags.Args()
	if len(command) == 0 {
		fmt.Fprintln(os.Stderr, "steprun-artifacts run: no command given after --")
		return 2
	}
	var outputs []outputSpec
	if err := json.Unmarshal([]byte(*outputsJSON), &outputs); err != nil {
		fmt.Fprintf(os.Stderr, "steprun-artifacts run: bad --outputs: %v\n", err)
		return 2
	}

	if err := notDumpable(); err != nil {
		fmt.Fprintf(os.Stderr, "steprun-artifacts run: cannot protect itself from the step: %v\n", err)
		return 126
	}
	conn, err := connectUploader(*dir, connectWait)
	if err != nil {
		fmt.Fprintf(os.Stderr, "steprun-artifacts run: %v\n", err)
		return 126
	}
	defer conn.Close()

	code := execute(command)

	marker := doneMarker{ExitCode: code, Outputs: map[string]packResult{}}
	for _, out := range outputs {
		marker.Outputs[out.Name] = packOutput(out, *dir, *maxBytes)
	}
	data, _ := json.Marshal(marker)
	if _, err := conn.Write(data); err != nil {
		fmt.Fprintf(os.Stderr, "steprun-artifacts run: cannot tell the uploader: %v\n", err)
	}
	return code
}

// notDumpable keeps processes of the same user (the step's command) from ptracing this one or
// reading its open descriptors through /proc; it is not inherited across exec.
func notDumpable() error {
	const prSetDumpable = 4
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// connectUploader opens the one connection the uploader accepts, waiting for it to listen.
func connectUploader(dir string, wait time.Duration) (net.Conn, error) {
	path := filepath.Join(dir, socketFile)
	deadline := time.Now().Add(wait)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the artifact uploader did not listen on %s within %s: %v", path, wait, err)
		}
		time.Sleep(pollInterval)
	}
}

// execute runs the step's command with this process's stdio and env, passing on the signals the
// kubelet sends (a timeout or a cancel stops the step, and its outputs are still packed).
func execute(command []string) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "steprun-artifacts run: cannot start %q: %v\n", command[0], err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	go func() {
		for sig := range signals {
			_ = cmd.Process.Signal(sig)
		}
	}()
	err := cmd.Wait()
	signal.Stop(signals)
	if err == nil {
		return 0
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			return 128 + int(status.Signal())
		}
		return exitErr.ExitCode()
	}
	return 1
}

func packOutput(out outputSpec, dir string, maxBytes int64) packResult {
	if _, err := os.Lstat(out.Path); errors.Is(err, os.ErrNotExist) {
		return packResult{State: "missing", Message: fmt.Sprintf("%s does not exist", out.Path)}
	}
	target := filepath.Join(dir, out.Name+".tgz")
	f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return packResult{State: "failed", Message: err.Error()}
	}
	_, err = pack(out.Path, f, maxBytes)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if errors.Is(err, errTooLarge) {
		os.Remove(target)
		return packResult{State: "failed", Message: fmt.Sprintf("%s packs to more than the limit of %d bytes", out.Path, maxBytes)}
	}
	if err != nil {
		os.Remove(target)
		return packResult{State: "failed", Message: fmt.Sprintf("packing %s: %v", out.Path, err)}
	}
	return packResult{State: "packed"}
}
