package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/scangate/scangate/client"
)

// Upload a file whole and wait for its verdict.
func Example() {
	ctx := context.Background()
	c, err := client.New([]string{scangateURL}) // client.WithAPIKey(key) when accounts are on
	if err != nil {
		log.Fatal(err)
	}
	report := strings.NewReader("quarterly figures, nothing to see here\n")
	id, err := c.Upload(ctx, report, report.Size(), &client.FileOptions{Filename: "report.txt"})
	if err != nil {
		log.Fatal(err)
	}
	r, err := c.Wait(ctx, id, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.FileInfo.DisplayName, r.ProcessInfo.Result, r.ScanResults.ScanAllResultA)
	// Output: report.txt Allowed No Threat Detected
}

// A gate: block what the workflow blocks.
func ExampleResult_Blocked() {
	ctx := context.Background()
	c, _ := client.New([]string{scangateURL})
	// The EICAR test file, built from two halves so that no scanner flags
	// this source.
	eicar := []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR` + `-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
	id, err := c.Upload(ctx, bytes.NewReader(eicar), int64(len(eicar)), &client.FileOptions{Filename: "eicar.com"})
	if err != nil {
		log.Fatal(err)
	}
	r, err := c.Wait(ctx, id, nil)
	if err != nil {
		log.Fatal(err)
	}
	if r.Blocked() {
		fmt.Println("blocked:", r.ProcessInfo.BlockedReason, r.Infected(), r.Threats())
	}
	// Output: blocked: Infected true [EICAR-Test-File]
}

// Upload a large file in parallel parts, spread over every server given,
// and resume it after an interruption.
func ExampleClient_UploadMultipart() {
	ctx := context.Background()
	// Any node takes any part: list them all.
	c, _ := client.New([]string{scangateURL /*, "http://node2:8008" */})
	file := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB; an *os.File in practice

	var dataID string // persist it: it is what a resume needs
	opts := &client.MultipartOptions{
		PartSize: 256 << 10,
		Parallel: 4,
		OnSession: func(id string, received int64) error {
			dataID = id
			return nil
		},
	}
	id, err := c.UploadMultipart(ctx, bytes.NewReader(file), int64(len(file)), &client.FileOptions{Filename: "big.txt"}, opts)
	if err != nil {
		// After a crash or a cancel, resume with the recorded id: only
		// the ranges the server reports missing are sent.
		opts.DataID = dataID
		id, err = c.UploadMultipart(ctx, bytes.NewReader(file), int64(len(file)), &client.FileOptions{Filename: "big.txt"}, opts)
	}
	if err != nil {
		log.Fatal(err)
	}
	r, _ := c.Wait(ctx, id, &client.WaitOptions{MaxInterval: time.Second})
	s, _ := c.MultipartStatus(ctx, id)
	fmt.Println(s.Status, s.ReceivedLength, r.FileInfo.FileSize, r.ProcessInfo.Result)
	// Output: complete 1048576 1048576 Allowed
}

// Look a file up by its hash; an unknown hash is ErrNotFound.
func ExampleClient_Hash() {
	c, _ := client.New([]string{scangateURL})
	_, err := c.Hash(context.Background(), strings.Repeat("0", 64), "")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output: true
}

// Log in as a configured user; the session id is sent as the apikey until
// Logout.
func ExampleClient_Login() {
	ctx := context.Background()
	c, _ := client.New([]string{scangateURL})
	if _, err := c.Login(ctx, "alice", "secret"); err != nil {
		log.Fatal(err)
	}
	data := []byte("alice's file")
	id, _ := c.Upload(ctx, bytes.NewReader(data), int64(len(data)), nil)
	r, _ := c.Wait(ctx, id, nil)
	fmt.Println(r.ProcessInfo.Username)
	if err := c.Logout(ctx); err != nil {
		log.Fatal(err)
	}
	_, err := c.Login(ctx, "alice", "wrong")
	fmt.Println(client.StatusCode(err))
	// Output:
	// alice
	// 403
}
