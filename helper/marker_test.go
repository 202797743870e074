package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func listen(t *testing.T, dir string) chan doneMarker {
	t.Helper()
	listener, err := listenForStep(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan doneMarker, 1)
	go func() {
		marker, ok := receiveMarker(listener)
		if !ok {
			marker.ExitCode = -1
		}
		got <- marker
	}()
	return got
}

func send(t *testing.T, conn net.Conn, marker doneMarker) {
	t.Helper()
	data, _ := json.Marshal(marker)
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// The step's command runs as run's user in run's container: whatever it writes or whoever it
// connects as, the uploader hears only run, which connected before the command started.
func TestOnlyRunsMarkerCounts(t *testing.T) {
	dir := t.TempDir()
	got := listen(t, dir)
	run, err := connectUploader(dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The command, later: a done file like the one the uploader used to trust, and a second
	// connection claiming success.
	forged, _ := json.Marshal(doneMarker{ExitCode: 0, Outputs: map[string]packResult{"dist": {State: "packed"}}})
	if err := os.WriteFile(filepath.Join(dir, "done"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("unix", filepath.Join(dir, socketFile)); err == nil {
			conn.Write(forged)
			conn.Close()
		}
		if _, err := os.Stat(filepath.Join(dir, socketFile)); os.IsNotExist(err) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	send(t, run, doneMarker{ExitCode: 3, Outputs: map[string]packResult{"dist": {State: "packed"}}})
	select {
	case marker := <-got:
		if marker.ExitCode != 3 {
			t.Fatalf("the uploader believed a forged marker: exit code %d", marker.ExitCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no marker received")
	}
	if _, err := net.Dial("unix", filepath.Join(dir, socketFile)); err == nil {
		t.Fatal("the uploader still accepts connections after run's")
	}
}

func TestRunDyingWithoutAMarkerIsLost(t *testing.T) {
	dir := t.TempDir()
	got := listen(t, dir)
	run, err := connectUploader(dir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	run.Close() // what the kernel does when run is killed
	if marker := <-got; marker.ExitCode != -1 {
		t.Fatalf("want lost, got %+v", marker)
	}
}

func TestRunWaitsForTheUploaderToListen(t *testing.T) {
	dir := t.TempDir()
	done := make(chan error, 1)
	go func() {
		conn, err := connectUploader(dir, 5*time.Second)
		if err == nil {
			data, _ := json.Marshal(doneMarker{ExitCode: 7})
			conn.Write(data)
			conn.Close()
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	got := listen(t, dir)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if marker := <-got; marker.ExitCode != 7 {
		t.Fatalf("want 7, got %+v", marker)
	}
	if _, err := connectUploader(t.TempDir(), 300*time.Millisecond); err == nil {
		t.Fatal("connected to an uploader that never listened")
	}
}
