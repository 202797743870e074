package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

// Files of the outputs volume, shared by the step's container (run) and the uploader (upload).
const (
	lockFile    = "lock"    // held by run for as long as it lives: the uploader sees it die
	startedFile = "started" // run holds the lock
	doneFile    = "done"    // the outputs are packed: a doneMarker
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

	// The lock is taken before the command starts and released by the kernel however this
	// process ends (even SIGKILL by the OOM killer), which is how the uploader learns that no
	// done marker will ever come.
	lock, err := os.OpenFile(filepath.Join(*dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(*dir, startedFile), nil, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "steprun-artifacts run: cannot prepare %s: %v\n", *dir, err)
		return 126
	}

	code := execute(command)

	marker := doneMarker{ExitCode: code, Outputs: map[string]packResult{}}
	for _, out := range outputs {
		marker.Outputs[out.Name] = packOutput(out, *dir, *maxBytes)
	}
	data, _ := json.Marshal(marker)
	tmp := filepath.Join(*dir, doneFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(*dir, doneFile))
	}
	return code
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
