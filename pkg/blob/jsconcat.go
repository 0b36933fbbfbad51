package blob

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// A concatenated blob of the jetstream store is made of object-store links
// (ADR-20): for each part object of each part blob, in order, a link named
// "<key>.<off>.<n>" to it, indexed like a part WriteAt wrote. Open, List
// and OpenPrefix then see key as any other blob; reading a part follows
// its link to the part's own chunks, so no byte is copied. Links are
// written last part first, so until the one at offset 0 is in, key shows
// a gap (ErrIncomplete), never a shorter file.

// Concat links key to the objects of parts.
func (s *JetStream) Concat(ctx context.Context, key string, parts []string) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	type link struct {
		name   string
		target *jetstream.ObjectInfo
	}
	var links []link
	var off int64
	for _, pk := range parts {
		if !ValidKey(pk) || pk == key {
			return ErrBadKey
		}
		ps, err := s.parts(ctx, pk)
		if err != nil {
			return unavailable(ctx, err)
		}
		if len(ps) == 0 {
			return fmt.Errorf("blob jetstream: concat %s: part %s: %w", key, pk, ErrNotFound)
		}
		segs, size, err := manifest(pk, ps, false)
		if err != nil {
			return fmt.Errorf("blob jetstream: concat %s: %w", key, err)
		}
		for _, seg := range segs {
			if seg.skip != 0 {
				// A link is a whole object; an overlap would need a skip.
				return fmt.Errorf("blob jetstream: concat %s: part %s was written in overlapping ranges", key, pk)
			}
			info, err := s.obs.GetInfo(ctx, seg.name)
			if err != nil {
				return unavailable(ctx, fmt.Errorf("blob jetstream: concat %s: %s: %w", key, seg.name, err))
			}
			links = append(links, link{partName(key, off+seg.start, seg.end-seg.start), info})
		}
		off += size
	}
	for i := len(links) - 1; i >= 0; i-- {
		l := links[i]
		if _, err := s.obs.AddLink(ctx, l.name, l.target); err != nil {
			return unavailable(ctx, fmt.Errorf("blob jetstream: concat %s: link %s: %w", key, l.name, err))
		}
		if _, err := s.kv.Put(ctx, l.name, nil); err != nil {
			return unavailable(ctx, fmt.Errorf("blob jetstream: concat %s: index %s: %w", key, l.name, err))
		}
	}
	return nil
}

// linkTarget is the object a link object points to, "" for an object
// that holds its own chunks.
func linkTarget(info *jetstream.ObjectInfo) string {
	if info == nil || info.Opts == nil || info.Opts.Link == nil {
		return ""
	}
	return info.Opts.Link.Name
}

// blobOfPart is the blob key a part object belongs to ("<key>.<off>.<n>").
func blobOfPart(name string) (string, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", false
	}
	j := strings.LastIndexByte(name[:i], '.')
	if j <= 0 || !ValidKey(name[:j]) {
		return "", false
	}
	return name[:j], true
}

// linkedBlobs lists the blobs key's links point to (none for a blob
// written with WriteAt).
func (s *JetStream) linkedBlobs(ctx context.Context, key string, parts []part) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range parts {
		info, err := s.obs.GetInfo(ctx, partName(key, p.off, p.n))
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if t := linkTarget(info); t != "" {
			if b, ok := blobOfPart(t); ok && b != key && !seen[b] {
				seen[b] = true
				out = append(out, b)
			}
		}
	}
	return out, nil
}

var _ Concatenator = (*JetStream)(nil)
