package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A store that accepts only the URLs it was told about, like presigned ones.
func fakeStore(t *testing.T) (*httptest.Server, map[string][]byte) {
	t.Helper()
	objects := map[string][]byte{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("X-Amz-Signature") != "good" {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`)
			return
		}
		switch r.Method {
		case http.MethodPut:
			if r.ContentLength < 0 {
				w.WriteHeader(http.StatusLengthRequired)
				return
			}
			data, _ := io.ReadAll(r.Body)
			objects[r.URL.Path] = data
		case http.MethodGet:
			data, ok := objects[r.URL.Path]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `<Error><Code>NoSuchKey</Code></Error>`)
				return
			}
			w.Write(data)
		}
	}))
	t.Cleanup(server.Close)
	return server, objects
}

func storeWith(t *testing.T, urls presigned) *store {
	t.Helper()
	data, _ := json.Marshal(urls)
	t.Setenv(envURLs, string(data))
	st, err := newStore()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPresignedPutThenGet(t *testing.T) {
	server, objects := fakeStore(t)
	url := server.URL + "/bucket/ci/build/uid/1/dist.tgz?X-Amz-Signature=good"
	st := storeWith(t, presigned{Inputs: map[string]string{"dist": url}, Outputs: map[string]string{"dist": url}})
	path := filepath.Join(t.TempDir(), "dist.tgz")
	payload := []byte("packed bytes")
	os.WriteFile(path, payload, 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	sum, err := st.put(context.Background(), "dist", f, int64(len(payload)))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	if sum != hex.EncodeToString(want[:]) || !bytes.Equal(objects["/bucket/ci/build/uid/1/dist.tgz"], payload) {
		t.Fatalf("stored %q with sum %s", objects["/bucket/ci/build/uid/1/dist.tgz"], sum)
	}
	body, size, err := st.get(context.Background(), "dist")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	got, _ := io.ReadAll(body)
	if size != int64(len(payload)) || !bytes.Equal(got, payload) {
		t.Fatalf("read %q (%d)", got, size)
	}
}

func TestARefusalIsTheStoresWordsWithoutTheURL(t *testing.T) {
	server, _ := fakeStore(t)
	url := server.URL + "/bucket/other-namespace/dist.tgz?X-Amz-Signature=stolen"
	st := storeWith(t, presigned{Inputs: map[string]string{"dist": url}})
	_, _, err := st.get(context.Background(), "dist")
	if err == nil || err.Error() != "AccessDenied (403): Access Denied." {
		t.Fatalf("want the store's refusal, got %v", err)
	}
	if _, _, err := st.get(context.Background(), "other"); err == nil || !strings.Contains(err.Error(), "no URL for input") {
		t.Fatalf("an input the operator did not sign must not be fetched: %v", err)
	}
}

func TestATransportErrorNeverQuotesTheSignature(t *testing.T) {
	st := storeWith(t, presigned{Outputs: map[string]string{"dist": "http://127.0.0.1:1/b/k?X-Amz-Signature=secret"}})
	path := filepath.Join(t.TempDir(), "dist.tgz")
	os.WriteFile(path, []byte("x"), 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	_, err := st.put(context.Background(), "dist", f, 1)
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want connection refused without the URL, got %v", err)
	}
}

func TestWithoutItsURLsTheHelperSaysSo(t *testing.T) {
	t.Setenv(envURLs, "")
	if _, err := newStore(); err == nil || !strings.Contains(err.Error(), envURLs) {
		t.Fatalf("want a missing-URLs error, got %v", err)
	}
}
