package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestDirectoryRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "dist")
	write(t, filepath.Join(src, "a.txt"), "alpha")
	write(t, filepath.Join(src, "sub", "b.txt"), "beta")
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := pack(src, &buf, 0); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "in")
	if err := unpack(&buf, dst, unpackLimits{}); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dst, "a.txt")) != "alpha" || read(t, filepath.Join(dst, "sub", "b.txt")) != "beta" {
		t.Fatal("contents differ")
	}
	if target, _ := os.Readlink(filepath.Join(dst, "link")); target != "a.txt" {
		t.Fatalf("symlink not kept: %q", target)
	}
}

func TestFileRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "report.xml")
	write(t, src, "<ok/>")
	var buf bytes.Buffer
	if _, err := pack(src, &buf, 0); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.xml")
	if err := unpack(&buf, dst, unpackLimits{}); err != nil {
		t.Fatal(err)
	}
	if read(t, dst) != "<ok/>" {
		t.Fatal("file differs")
	}
}

func TestPackRespectsTheLimit(t *testing.T) {
	src := filepath.Join(t.TempDir(), "big")
	write(t, src, strings.Repeat("x", 1<<20))
	// Below the size of gzip's own header: any content is too large.
	if _, err := pack(src, &bytes.Buffer{}, 10); !errors.Is(err, errTooLarge) {
		t.Fatalf("want errTooLarge, got %v", err)
	}
}

func archiveOf(t *testing.T, entries []tar.Header, bodies map[string]string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, hdr := range entries {
		hdr := hdr
		body := bodies[hdr.Name]
		hdr.Size = int64(len(body))
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if body != "" {
			if _, err := tw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw.Close()
	gz.Close()
	return &buf
}

func TestUnpackRefusesEntriesThatLeaveTheArtifact(t *testing.T) {
	cases := map[string][]tar.Header{
		"dotdot": {
			{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "./../escape", Typeflag: tar.TypeReg, Mode: 0o644},
		},
		"through-symlink": {
			{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "./out", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
			{Name: "./out/passwd", Typeflag: tar.TypeReg, Mode: 0o644},
		},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			err := unpack(archiveOf(t, entries, map[string]string{}), filepath.Join(dir, "in"), unpackLimits{})
			if err == nil || !strings.Contains(err.Error(), "corrupt artifact") {
				t.Fatalf("want a corrupt artifact error, got %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
				t.Fatal("an entry was written outside the artifact")
			}
		})
	}
}

func TestOpenRegularRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "secret"), "credentials")
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(dir, "dist.tgz")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openRegular(dir, "dist.tgz"); err == nil {
		t.Fatal("a symlink planted by the step was followed")
	}
}

// A few KB of gzip that unpack to megabytes of zeros: the bound is on what is written, not on
// what was downloaded.
func bomb(t *testing.T, files int, size int64) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 64<<10)
	for i := 0; i < files; i++ {
		hdr := &tar.Header{Name: "./f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("0", i/26), Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		for left := size; left > 0; left -= int64(len(zeros)) {
			n := min(left, int64(len(zeros)))
			if _, err := tw.Write(zeros[:n]); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw.Close()
	gz.Close()
	return &buf
}

func TestUnpackBoundsTheBytesWritten(t *testing.T) {
	archive := bomb(t, 1, 8<<20)
	if archive.Len() > 64<<10 {
		t.Fatalf("the bomb is not one: %d compressed bytes", archive.Len())
	}
	dir := t.TempDir()
	err := unpack(archive, filepath.Join(dir, "in"), unpackLimits{Bytes: 1 << 20, Entries: 100})
	if err == nil || !strings.Contains(err.Error(), "more than 1048576 bytes") || !strings.Contains(err.Error(), "maxUnpackedBytes") {
		t.Fatalf("want the byte limit named, got %v", err)
	}
	var written int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, _ error) error {
		if info != nil && info.Mode().IsRegular() {
			written += info.Size()
		}
		return nil
	})
	if written > 1<<20 {
		t.Fatalf("%d bytes were written past the limit", written)
	}
}

func TestUnpackBoundsTheEntries(t *testing.T) {
	dir := t.TempDir()
	err := unpack(bomb(t, 50, 0), filepath.Join(dir, "in"), unpackLimits{Bytes: 1 << 20, Entries: 10})
	if err == nil || !strings.Contains(err.Error(), "more than 10 entries") || !strings.Contains(err.Error(), "maxEntries") {
		t.Fatalf("want the entry limit named, got %v", err)
	}
}

func TestUnpackWithinTheBoundsSucceeds(t *testing.T) {
	dir := t.TempDir()
	if err := unpack(bomb(t, 9, 1000), filepath.Join(dir, "in"), unpackLimits{Bytes: 9000, Entries: 10}); err != nil {
		t.Fatal(err)
	}
}
