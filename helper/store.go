package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The helper holds no credential of the store. The operator presigns one URL per object of this
// attempt (GET for each input, PUT for each output) and hands them to the helper's containers
// through the attempt's own Secret, as this variable; the step's container never has it.
const (
	envURLs = "STEPRUN_ARTIFACTS_URLS"
	// A request that fails to reach the store, or that the store answers with a 5xx, is tried
	// this many times: a store that stays down must end the step, not hang it.
	maxTries = 3
)

type presigned struct {
	Inputs  map[string]string `json:"inputs"`
	Outputs map[string]string `json:"outputs"`
}

type store struct {
	client *http.Client
	urls   presigned
}

func newStore() (*store, error) {
	raw := os.Getenv(envURLs)
	if raw == "" {
		return nil, fmt.Errorf("%s is not set: the attempt's artifact URLs are missing", envURLs)
	}
	var urls presigned
	if err := json.Unmarshal([]byte(raw), &urls); err != nil {
		return nil, fmt.Errorf("%s is not the operator's JSON: %v", envURLs, err)
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		ResponseHeaderTimeout: 2 * time.Minute,
		IdleConnTimeout:       30 * time.Second,
	}
	return &store{client: &http.Client{Transport: transport}, urls: urls}, nil
}

// s3Error is the body of a refused S3 request.
type s3Error struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// answer is the store's own words for a refused request, e.g. "AccessDenied (403): Access
// Denied." It never quotes the URL: its signature opens the object to whoever reads it.
func answer(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	var parsed s3Error
	if xml.Unmarshal(body, &parsed) == nil && parsed.Code != "" {
		if parsed.Message != "" {
			return fmt.Errorf("%s (%d): %s", parsed.Code, resp.StatusCode, parsed.Message)
		}
		return fmt.Errorf("%s (%d)", parsed.Code, resp.StatusCode)
	}
	return fmt.Errorf("the store answered %s", resp.Status)
}

// transportError is what went wrong on the way, without the URL net/http puts in its errors.
func transportError(method string, err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return fmt.Errorf("%s: %v", method, urlErr.Err)
	}
	return err
}

func retryable(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests
}

func pause(try int) {
	time.Sleep(time.Duration(try) * time.Second)
}

// put uploads the regular file f (size bytes) with one presigned PUT, hashing what it sends; a
// retry starts the file over.
func (s *store) put(ctx context.Context, name string, f *os.File, size int64) (string, error) {
	target, ok := s.urls.Outputs[name]
	if !ok {
		return "", fmt.Errorf("the operator signed no URL for output %q", name)
	}
	var last error
	for try := 1; try <= maxTries; try++ {
		if try > 1 {
			pause(try - 1)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		hash := sha256.New()
		body := io.TeeReader(io.LimitReader(f, size), hash)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, target, io.NopCloser(body))
		if err != nil {
			return "", transportError("PUT", err)
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/gzip")
		resp, err := s.client.Do(req)
		if err != nil {
			last = transportError("PUT", err)
			continue
		}
		if resp.StatusCode/100 == 2 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			return hex.EncodeToString(hash.Sum(nil)), nil
		}
		last = answer(resp)
		resp.Body.Close()
		if !retryable(resp.StatusCode) {
			return "", last
		}
	}
	return "", last
}

// get opens an input's object for streaming; the caller checks its sha256 as it reads.
func (s *store) get(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	source, ok := s.urls.Inputs[name]
	if !ok {
		return nil, 0, fmt.Errorf("the operator signed no URL for input %q", name)
	}
	var last error
	for try := 1; try <= maxTries; try++ {
		if try > 1 {
			pause(try - 1)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
		if err != nil {
			return nil, 0, transportError("GET", err)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			last = transportError("GET", err)
			continue
		}
		if resp.StatusCode == http.StatusOK {
			return resp.Body, resp.ContentLength, nil
		}
		last = answer(resp)
		resp.Body.Close()
		if !retryable(resp.StatusCode) {
			return nil, 0, last
		}
	}
	return nil, 0, last
}

type uploaded struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Sha256 string `json:"sha256"`
}

// truncate keeps messages within the termination message's 4 KiB.
func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func writeTermination(path string, text string) {
	if path == "" {
		return
	}
	_ = os.WriteFile(path, []byte(text), 0o644)
}
