package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const (
	defaultTermination = "/dev/termination-log"
	// The termination message holds at most 4 KiB; the error text gets what the list leaves.
	maxErrorText = 1500
	pollInterval = 200 * time.Millisecond
)

type inputSpec struct {
	Name   string `json:"name"`
	Key    string `json:"key"`
	Sha256 string `json:"sha256"`
	Dest   string `json:"dest"`
}

// ----------------------------------------------------------------- init

func initMain(args []string) int {
	flags := flag.NewFlagSet("init", flag.ContinueOnError)
	binDir := flags.String("bin-dir", "", "where to copy this binary for the step's container")
	inputsJSON := flags.String("inputs", "[]", "JSON list of {name, key, sha256, dest}")
	maxBytes := flags.Int64("max-bytes", 0, "largest artifact accepted (0: no limit)")
	maxUnpacked := flags.Int64("max-unpacked-bytes", 0, "most bytes one input unpacks to (0: no limit)")
	maxEntries := flags.Int("max-entries", 0, "most entries one input unpacks (0: no limit)")
	termination := flags.String("termination-log", defaultTermination, "")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	limits := unpackLimits{Bytes: *maxUnpacked, Entries: *maxEntries}
	fail := func(format string, a ...any) int {
		text := truncate(fmt.Sprintf(format, a...), 3500)
		fmt.Fprintln(os.Stderr, text)
		writeTermination(*termination, text)
		return 1
	}
	if *binDir != "" {
		if err := copySelf(filepath.Join(*binDir, "steprun-artifacts")); err != nil {
			return fail("cannot install the artifact helper: %v", err)
		}
	}
	var inputs []inputSpec
	if err := json.Unmarshal([]byte(*inputsJSON), &inputs); err != nil {
		return fail("bad --inputs: %v", err)
	}
	if len(inputs) == 0 {
		return 0
	}
	st, err := newStore()
	if err != nil {
		return fail("ArtifactDownloadFailed: %v", err)
	}
	for _, in := range inputs {
		started := time.Now()
		size, err := download(st, in, *maxBytes, limits)
		if err != nil {
			os.RemoveAll(in.Dest)
			return fail("ArtifactDownloadFailed: input %q (%s): %s", in.Name, in.Key, err)
		}
		fmt.Fprintf(os.Stderr, "input %q: %d bytes from %s, sha256 verified, in %s\n", in.Name, size, in.Key, time.Since(started).Round(time.Millisecond))
	}
	return 0
}

func copySelf(dst string) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, self); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type hashingReader struct {
	r    io.Reader
	hash io.Writer
	n    int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.hash.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// errTooLong: the store sent more bytes than the limit, whatever its Content-Length said.
var errTooLong = errors.New("the object is longer than the limit")

type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, errTooLong
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func download(st *store, in inputSpec, maxBytes int64, limits unpackLimits) (int64, error) {
	ctx := context.Background()
	obj, size, err := st.get(ctx, in.Name)
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	if maxBytes > 0 && size > maxBytes {
		return 0, fmt.Errorf("%d bytes is more than the limit of %d", size, maxBytes)
	}
	var body io.Reader = obj
	if maxBytes > 0 {
		body = &boundedReader{r: obj, left: maxBytes}
	}
	hash := sha256.New()
	reader := &hashingReader{r: body, hash: hash}
	if err := unpack(reader, in.Dest, limits); err != nil {
		if errors.Is(err, errTooLong) {
			return 0, fmt.Errorf("more than the limit of %d bytes", maxBytes)
		}
		return 0, err
	}
	// gzip stops at its trailer; whatever follows still counts for the hash.
	if _, err := io.Copy(io.Discard, reader); err != nil {
		if errors.Is(err, errTooLong) {
			return 0, fmt.Errorf("more than the limit of %d bytes", maxBytes)
		}
		return 0, transportError("GET", err)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); in.Sha256 != "" && got != in.Sha256 {
		return 0, fmt.Errorf("sha256 mismatch: the store holds %s, the producer uploaded %s", got, in.Sha256)
	}
	return reader.n, nil
}

// ----------------------------------------------------------------- upload

type uploadReport struct {
	Artifacts []uploaded `json:"artifacts"`
	Error     string     `json:"error,omitempty"`
	// The step's container ended without packing its outputs (killed): nothing to upload.
	Lost bool `json:"lost,omitempty"`
	// Outputs not uploaded because the step failed and uploadOnFailure is off.
	Skipped []string `json:"skipped,omitempty"`
}

func uploadMain(args []string) int {
	flags := flag.NewFlagSet("upload", flag.ContinueOnError)
	outputsJSON := flags.String("outputs", "{}", "JSON object: output name -> key")
	dir := flags.String("dir", "", "the outputs volume")
	onFailure := flags.Bool("on-failure", true, "upload when the step's command failed")
	maxBytes := flags.Int64("max-bytes", 0, "largest artifact (0: no limit)")
	termination := flags.String("termination-log", defaultTermination, "")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	// A timeout or cancel sends SIGTERM to every container at once; the uploader keeps going
	// until the step's outputs are up or the grace period ends.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// Were the Pod's process namespace shared, the step could otherwise ptrace the uploader.
	_ = notDumpable()
	var keys map[string]string
	if err := json.Unmarshal([]byte(*outputsJSON), &keys); err != nil {
		fmt.Fprintf(os.Stderr, "bad --outputs: %v\n", err)
		return 2
	}
	report := uploadReport{Artifacts: []uploaded{}}
	finish := func() int {
		data, _ := json.Marshal(report)
		writeTermination(*termination, string(data))
		fmt.Fprintln(os.Stderr, string(data))
		if report.Error != "" {
			return 1
		}
		return 0
	}

	listener, err := listenForStep(*dir)
	if err != nil {
		report.Error = truncate(fmt.Sprintf("ArtifactUploadFailed: %v", err), maxErrorText)
		return finish()
	}
	marker, ok := receiveMarker(listener)
	if !ok {
		report.Lost = true
		return finish()
	}
	var problems []string
	var st *store
	names := make([]string, 0, len(keys))
	for name := range keys {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		result, found := marker.Outputs[name]
		switch {
		case !found:
			problems = append(problems, fmt.Sprintf("output %q: the step did not report it", name))
			continue
		case marker.ExitCode != 0 && !*onFailure:
			report.Skipped = append(report.Skipped, name)
			continue
		case result.State == "missing":
			// A failed step often never got to write its outputs: that is its failure, not ours.
			if marker.ExitCode == 0 {
				problems = append(problems, fmt.Sprintf("output %q: %s after the step ended", name, result.Message))
			} else {
				report.Skipped = append(report.Skipped, name)
			}
			continue
		case result.State != "packed":
			problems = append(problems, fmt.Sprintf("output %q: %s", name, result.Message))
			continue
		}
		if st == nil {
			var err error
			if st, err = newStore(); err != nil {
				problems = append(problems, err.Error())
				break
			}
		}
		started := time.Now()
		item, err := uploadOne(st, *dir, name, keys[name], *maxBytes)
		if err != nil {
			problems = append(problems, fmt.Sprintf("output %q (%s): %s", name, keys[name], err))
			continue
		}
		fmt.Fprintf(os.Stderr, "output %q: %d bytes to %s in %s\n", name, item.Size, keys[name], time.Since(started).Round(time.Millisecond))
		report.Artifacts = append(report.Artifacts, item)
	}
	if len(problems) > 0 {
		report.Error = truncate("ArtifactUploadFailed: "+strings.Join(problems, "; "), maxErrorText)
	}
	return finish()
}

// listenForStep opens the socket run connects to (run.go says why a socket, not a file).
func listenForStep(dir string) (*net.UnixListener, error) {
	path := filepath.Join(dir, socketFile)
	_ = os.Remove(path)
	listener, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %v", path, err)
	}
	// The step's container may run as another user; only the first connection counts anyway.
	if err := os.Chmod(path, 0o666); err != nil {
		listener.Close()
		return nil, err
	}
	return listener, nil
}

// receiveMarker accepts the first connection, which is run's (it connects before the step's
// command starts), closes the socket to any other, and reads the marker run sends when the
// outputs are packed; false when run died without sending it.
func receiveMarker(listener *net.UnixListener) (doneMarker, bool) {
	var marker doneMarker
	listener.SetUnlinkOnClose(true)
	conn, err := listener.Accept()
	listener.Close()
	if err != nil {
		return marker, false
	}
	defer conn.Close()
	data, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil || json.Unmarshal(data, &marker) != nil {
		return marker, false
	}
	return marker, true
}

// openRegular opens name in dir refusing symlinks and anything but a regular file: the step's
// container writes this volume, and must not point the uploader at the uploader's own files.
func openRegular(dir, name string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file", name)
	}
	return f, info, nil
}

func uploadOne(st *store, dir, name, key string, maxBytes int64) (uploaded, error) {
	f, info, err := openRegular(dir, name+".tgz")
	if err != nil {
		return uploaded{}, err
	}
	defer f.Close()
	if maxBytes > 0 && info.Size() > maxBytes {
		return uploaded{}, fmt.Errorf("%d bytes is more than the limit of %d", info.Size(), maxBytes)
	}
	sum, err := st.put(context.Background(), name, f, info.Size())
	if err != nil {
		return uploaded{}, err
	}
	return uploaded{Name: name, Size: info.Size(), Sha256: sum}, nil
}
