package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Login opens a login session for a configured user (POST /login) and
// makes the client send its session id as the apikey from now on. Wrong
// credentials are an *Error with StatusCode 403. A repeated login (the
// client retries one whose answer was lost) only opens a second session,
// which expires unused, so login is retried like a read.
func (c *Client) Login(ctx context.Context, user, password string) (sessionID string, err error) {
	raw, err := json.Marshal(map[string]string{"user": user, "password": password})
	if err != nil {
		return "", err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	resp, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/login", header: h, noKey: true, idempotent: true,
		size: int64(len(raw)), body: func() (io.Reader, error) { return bytes.NewReader(raw), nil }})
	if err != nil {
		return "", err
	}
	var a struct {
		SessionID string `json:"session_id"`
	}
	if err := decode(resp, &a); err != nil {
		return "", err
	}
	if a.SessionID == "" {
		return "", errors.New("scangate: login answered without a session_id")
	}
	c.SetAPIKey(a.SessionID)
	return a.SessionID, nil
}

// Logout ends the login session the client sends (POST /logout) and stops
// sending it.
func (c *Client) Logout(ctx context.Context) error {
	_, err := c.exchange(ctx, &request{method: http.MethodPost, path: "/logout", idempotent: true})
	if err != nil {
		return err
	}
	c.SetAPIKey("")
	return nil
}
