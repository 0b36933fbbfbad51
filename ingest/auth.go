package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/scangate/scangate/pkg/auth"
	"github.com/scangate/scangate/pkg/events"
)

// identityKey keys the request's auth.Identity in its locals.
const identityKey = "scangate.identity"

var (
	errInvalidKey  = apiError(fiber.StatusUnauthorized, "Invalid API key")
	errAdminOnly   = apiError(fiber.StatusForbidden, "Access denied: administrators only.")
	errFailedLogin = apiError(fiber.StatusForbidden, "Failed to login")
)

// openPaths answer without an apikey: probes, the version, login itself
// and the API description.
var openPaths = map[string]bool{
	"/readyz": true, "/livez": true, "/version": true, "/login": true, "/openapi.json": true,
}

// authenticate resolves the apikey header (percent-decoded, like every
// header) to the identity the request acts for: a static key, a login
// session, or anonymous when that is allowed and no key was sent. A key
// that is sent and not valid is refused even when anonymous is allowed:
// a client with an expired session must hear so, not quietly lose sight
// of its files.
func (s *Server) authenticate(c *fiber.Ctx) error {
	if openPaths[strings.TrimPrefix(c.Path(), "/v4")] {
		return c.Next()
	}
	if id, part, ok := signedPartRequest(c); ok {
		return s.checkSignedPart(c, id, part) // the signed URL is the credential (presigned.go)
	}
	id, err := s.identify(c)
	if err != nil {
		return err
	}
	c.Locals(identityKey, id)
	return c.Next()
}

func (s *Server) identify(c *fiber.Ctx) (auth.Identity, error) {
	key := header(c, "apikey")
	if key == "" {
		if s.dir.AnonymousAllowed() {
			return auth.Anonymous, nil
		}
		return auth.Identity{}, errInvalidKey
	}
	if id, ok := s.dir.StaticKey(key); ok {
		return id, nil
	}
	user, err := s.logins.Resolve(c.UserContext(), key, time.Now())
	if errors.Is(err, auth.ErrInvalidKey) {
		return auth.Identity{}, errInvalidKey
	}
	if err != nil {
		return auth.Identity{}, err
	}
	id, ok := s.dir.User(user)
	if !ok {
		return auth.Identity{}, errInvalidKey // the user was removed from the config
	}
	id.Session = key
	return id, nil
}

// identity is who the request acts for (set by authenticate).
func identity(c *fiber.Ctx) auth.Identity {
	if id, ok := c.Locals(identityKey).(auth.Identity); ok {
		return id
	}
	return auth.Identity{} // an open path: sees nothing
}

// sees reports whether the request may see a record owned by owner.
// Everything else answers as for an unknown id, so other users' ids
// cannot even be confirmed to exist.
func sees(c *fiber.Ctx, owner string) bool { return identity(c).Sees(owner) }

// requireAdmin refuses non-admins.
func requireAdmin(c *fiber.Ctx) error {
	if !identity(c).Admin {
		return errAdminOnly
	}
	return nil
}

// maxLoginBody bounds what POST /login reads.
const maxLoginBody = 16 << 10

// postLogin is POST /login {"user","password"} → {"session_id"}. Real
// clients send the JSON with Content-Type application/x-www-form-urlencoded
// (and an X-File-Size header): the body is read as JSON whatever its type,
// and as a form only when it is not JSON.
func (s *Server) postLogin(c *fiber.Ctx) error {
	body, err := readSmallBody(c, maxLoginBody)
	if err != nil {
		return err
	}
	var creds struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal(body, &creds); err != nil {
		form, ferr := url.ParseQuery(string(body))
		if ferr != nil || !form.Has("user") {
			return apiError(fiber.StatusBadRequest, "Invalid login request: want {\"user\",\"password\"}.")
		}
		creds.User, creds.Password = form.Get("user"), form.Get("password")
	}
	id, ok := s.dir.CheckPassword(creds.User, creds.Password)
	if !ok {
		s.log.Info().Str("user", truncate(creds.User, 64)).Str("remote", c.IP()).Msg("login failed")
		return errFailedLogin
	}
	sid, err := s.logins.Create(c.UserContext(), id.User, time.Now())
	if err != nil {
		return err
	}
	s.log.Info().Str("user", id.User).Str("remote", c.IP()).Msg("login")
	return c.JSON(fiber.Map{"session_id": sid})
}

// postLogout is POST /logout: ends the session the apikey header names.
func (s *Server) postLogout(c *fiber.Ctx) error {
	id := identity(c)
	if id.Session == "" {
		return apiError(fiber.StatusBadRequest, "The apikey is not a login session.")
	}
	if err := s.logins.Delete(c.UserContext(), id.Session); err != nil {
		return err
	}
	s.log.Info().Str("user", id.User).Msg("logout")
	return c.JSON(fiber.Map{"response": "Logout success"})
}

// readSmallBody reads a request body of at most limit bytes.
func readSmallBody(c *fiber.Ctx, limit int64) ([]byte, error) {
	n := int64(c.Request().Header.ContentLength())
	if n > limit {
		return nil, apiError(fiber.StatusRequestEntityTooLarge, "Request body too large.")
	}
	r := c.Context().RequestBodyStream()
	if r == nil || n <= 0 {
		return bytes.Clone(c.Body()), nil
	}
	body := &clientBody{r: r, want: n}
	c.Locals(bodyKey, body)
	buf, err := io.ReadAll(io.LimitReader(body, n))
	if err != nil || int64(len(buf)) < n {
		return nil, apiError(fiber.StatusBadRequest, "Request body is shorter than Content-Length.")
	}
	return buf, nil
}

// licenseDays is days_left: scangate is open source and never expires.
const licenseDays = 36500

// getLicense is GET /admin/license. scangate has no license to enforce;
// the fields say so in the shape MetaDefender clients parse.
func (s *Server) getLicense(c *fiber.Ctx) error {
	if err := requireAdmin(c); err != nil {
		return err
	}
	dep, err := s.deploymentID(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{
		"product_id":       "scangate",
		"product_name":     "scangate (open source, Apache-2.0)",
		"licensed_to":      "Everyone: open source, no license key needed",
		"days_left":        licenseDays,
		"expiration":       "never",
		"deployment":       dep,
		"online_activated": true,
		"max_node_count":   0, // 0: no limit on nodes
	})
}

// deploymentID is a stable id of this deployment, the same on every node:
// derived from when its JetStream topology was first created.
func (s *Server) deploymentID(c *fiber.Ctx) (string, error) {
	st, err := s.b.JS.Stream(c.UserContext(), events.StreamUploads)
	if err != nil {
		return "", err
	}
	created := st.CachedInfo().Created.UTC().UnixNano()
	return "scangate-" + strconv.FormatInt(created, 36), nil
}

// checkScanLimit counts n new files against their user's files per minute
// (every ingest node adds to the same JetStream counter) and refuses them,
// before a body is read, once the minute's count passes the limit.
func (s *Server) checkScanLimit(c *fiber.Ctx, n int) error {
	id := identity(c)
	limit := s.dir.ScanLimit(id.User)
	if limit <= 0 {
		return nil
	}
	now := time.Now()
	window := s.opts.ScanLimitWindow.Milliseconds()
	slot := now.UnixMilli() / window
	ack, err := s.b.JS.PublishMsg(c.UserContext(), countMsg(events.LimitSubject(auth.Token(id.User), slot), n))
	if err != nil {
		return err
	}
	count, err := strconv.ParseInt(ack.Value, 10, 64)
	if err != nil {
		return err
	}
	if count <= int64(limit) {
		return nil
	}
	left := time.Duration((slot+1)*window-now.UnixMilli()) * time.Millisecond
	c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(int64(max(time.Second, left.Round(time.Second))/time.Second), 10))
	if c.Request().Header.ContentLength() > preReadBody {
		c.Locals(bodyKey, &clientBody{err: errRefusedUnread}) // close rather than read a refused body
	}
	return apiError(fiber.StatusForbidden, "Scan limit reached")
}

// countMsg adds n to a JetStream counter: the server sums, so nodes
// counting at once never lose an increment.
func countMsg(subject string, n int) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set("Nats-Incr", strconv.Itoa(n))
	return m
}
