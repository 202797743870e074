package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The store's coordinates and credentials come from the environment of the helper's containers,
// which the operator fills from the step's own Secret; the step's container never has them.
const (
	envEndpoint  = "STEPRUN_ARTIFACTS_ENDPOINT"
	envBucket    = "STEPRUN_ARTIFACTS_BUCKET"
	envRegion    = "STEPRUN_ARTIFACTS_REGION"
	envAccessKey = "STEPRUN_ARTIFACTS_ACCESS_KEY"
	envSecretKey = "STEPRUN_ARTIFACTS_SECRET_KEY"
	// Parts are streamed one at a time: memory stays at one part whatever the artifact's size.
	partSize = 16 << 20
)

type store struct {
	client *minio.Client
	bucket string
}

func newStore() (*store, error) {
	endpoint := os.Getenv(envEndpoint)
	bucket := os.Getenv(envBucket)
	if endpoint == "" || bucket == "" {
		return nil, fmt.Errorf("%s and %s must be set", envEndpoint, envBucket)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%s=%q is not an http(s) URL", envEndpoint, endpoint)
	}
	// Bounded retries: a store that stays down must end the step, not hang it.
	minio.MaxRetry = 3
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(os.Getenv(envAccessKey), os.Getenv(envSecretKey), ""),
		Secure:       u.Scheme == "https",
		Region:       os.Getenv(envRegion),
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, err
	}
	return &store{client: client, bucket: bucket}, nil
}

// storeAnswer is the store's own words for a failed request, or the transport's error.
func storeAnswer(err error) string {
	var response minio.ErrorResponse
	if errors.As(err, &response) && response.Code != "" {
		if response.Message != "" {
			return fmt.Sprintf("%s (%d): %s", response.Code, response.StatusCode, response.Message)
		}
		return fmt.Sprintf("%s (%d)", response.Code, response.StatusCode)
	}
	return err.Error()
}

type uploaded struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Sha256 string `json:"sha256"`
}

// put streams r (size bytes) to key, hashing what it sends.
func (s *store) put(ctx context.Context, key string, r io.Reader, size int64) (string, error) {
	hash := sha256.New()
	_, err := s.client.PutObject(ctx, s.bucket, key, io.TeeReader(r, hash), size, minio.PutObjectOptions{
		ContentType:      "application/gzip",
		PartSize:         partSize,
		NumThreads:       1,
		DisableMultipart: size >= 0 && size < partSize,
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}

// get opens key for streaming; the caller checks its sha256 as it reads.
func (s *store) get(ctx context.Context, key string) (*minio.Object, int64, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, err
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, err
	}
	return obj, info.Size, nil
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
