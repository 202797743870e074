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
	if err := unpack(&buf, dst); err != nil {
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
	if err := unpack(&buf, dst); err != nil {
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
			err := unpack(archiveOf(t, entries, map[string]string{}), filepath.Join(dir, "in"))
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
