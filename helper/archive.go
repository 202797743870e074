package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// An artifact is always a tar+gzip stream. A directory's archive starts with a "./" entry and
// holds the tree below it; a file's archive holds that one regular file. Unpacking restores the
// same shape at the input's path.

var errTooLarge = errors.New("too large")

// limitWriter fails once more than limit bytes were written (limit <= 0: no limit).
type limitWriter struct {
	w       io.Writer
	limit   int64
	written int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.limit > 0 && l.written+int64(len(p)) > l.limit {
		return 0, errTooLarge
	}
	n, err := l.w.Write(p)
	l.written += int64(n)
	return n, err
}

// pack writes src (a file or a directory) as tar+gzip to dst; returns the archive's size.
func pack(src string, dst io.Writer, limit int64) (int64, error) {
	info, err := os.Lstat(src)
	if err != nil {
		return 0, err
	}
	counted := &limitWriter{w: dst, limit: limit}
	gz := gzip.NewWriter(counted)
	tw := tar.NewWriter(gz)
	switch {
	case info.Mode().IsRegular():
		err = addFile(tw, src, path.Base(src), info)
	case info.IsDir():
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, walkErr error) error {
			if walkErr != nil {
				return walkErr
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			name := "./" + filepath.ToSlash(rel)
			if rel == "." {
				name = "./"
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return addEntry(tw, p, name, fi)
		})
	default:
		return 0, fmt.Errorf("%s is neither a file nor a directory", src)
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	return counted.written, err
}

func addEntry(tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	switch {
	case fi.IsDir():
		if !strings.HasSuffix(name, "/") {
			name += "/"
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = name
		return tw.WriteHeader(hdr)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		hdr.Name = name
		return tw.WriteHeader(hdr)
	case fi.Mode().IsRegular():
		return addFile(tw, p, name, fi)
	default:
		// Sockets, FIFOs and devices are not files anyone can use elsewhere.
		return nil
	}
}

func addFile(tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	hdr.Name = name
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// The file may still be growing (a process the step left behind): copy what the header says.
	_, err = io.CopyN(tw, f, hdr.Size)
	return err
}

// unpackLimits bound what one artifact may unpack to (0: no bound). The compressed size is
// bounded before the download starts; a few MB of gzip still unpack to gigabytes of zeros,
// which would fill the node's disk, so what is written is bounded too.
type unpackLimits struct {
	Bytes   int64
	Entries int
}

// budget counts what an unpack wrote against its limits.
type budget struct {
	limits  unpackLimits
	bytes   int64
	entries int
}

func (b *budget) entry() error {
	b.entries++
	if b.limits.Entries > 0 && b.entries > b.limits.Entries {
		return fmt.Errorf("the artifact holds more than %d entries, the limit (maxEntries)", b.limits.Entries)
	}
	return nil
}

func (b *budget) file(size int64) error {
	b.bytes += size
	if b.limits.Bytes > 0 && b.bytes > b.limits.Bytes {
		return fmt.Errorf("the artifact unpacks to more than %d bytes, the limit (maxUnpackedBytes)", b.limits.Bytes)
	}
	return nil
}

// unpack extracts a tar+gzip stream to dst, which must not exist yet. Entries may not leave dst,
// nothing is written through a symlink the archive itself created, and the bytes and entries
// written stay within limits (checked from each header before anything of it is written).
func unpack(r io.Reader, dst string, limits unpackLimits) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a tar+gzip artifact: %w", err)
	}
	tr := tar.NewReader(gz)
	first := true
	isFile := false
	links := map[string]bool{}
	spent := budget{limits: limits}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("corrupt artifact: %w", err)
		}
		if err := spent.entry(); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := spent.file(hdr.Size); err != nil {
				return err
			}
		}
		if first {
			first = false
			if hdr.Typeflag == tar.TypeReg && !strings.Contains(strings.TrimPrefix(hdr.Name, "./"), "/") {
				isFile = true
				if err := writeFile(dst, tr, hdr); err != nil {
					return err
				}
				continue
			}
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		} else if isFile {
			return errors.New("corrupt artifact: a file artifact holds more than one entry")
		}
		rel := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if rel == "." || rel == "" {
			continue
		}
		if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("corrupt artifact: entry %q leaves the artifact", hdr.Name)
		}
		for parent := path.Dir(rel); parent != "."; parent = path.Dir(parent) {
			if links[parent] {
				return fmt.Errorf("corrupt artifact: entry %q is below the symlink %q", hdr.Name, parent)
			}
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, fs.FileMode(hdr.Mode)&0o777|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := writeFile(target, tr, hdr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
			links[rel] = true
		default:
			// Hard links, devices and the like are not part of what pack writes.
		}
	}
	if first {
		return errors.New("corrupt artifact: empty archive")
	}
	return nil
}

func writeFile(target string, r io.Reader, hdr *tar.Header) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fs.FileMode(hdr.Mode)&0o777|0o600)
	if err != nil {
		return err
	}
	// The tar reader yields exactly hdr.Size bytes of a regular file: what the budget counted.
	if _, err := io.CopyN(f, r, hdr.Size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
