package assembler

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/scangate/scangate/pkg/blob"
	"github.com/scangate/scangate/pkg/events"
	"github.com/scangate/scangate/pkg/session"
)

// Pre-signed part uploads (/file/v1/files/upload/parts). A part arrives by
// number, not offset, and its size is known only once it is stored, so
// each PUT stores its part whole in a blob of its own (blob.PartKey) and
// its event records the part by number. Nothing has an offset until the
// client completes: then the parts it names, in number order, become the
// file — a concatenation the blob store reads through the parts
// (blob.Concatenator), not a copy. The file is hashed by the scanner as it
// reads it for the scan, in the same single pass.
//
// Every decision is taken here, in stream order, by the session's one
// owner: which PUT of a part counts (the last one applied), whether the
// ETags a complete names match, whether a part is too small. Ingest only
// checks what a request says on its own, publishes, and answers from the
// view.

// refusalsKept is how many refused completes a view lists.
const refusalsKept = 16

// isPresigned reports the events applyPresigned folds: an open that names
// a pre-signed upload, and the kinds only those uploads have.
func isPresigned(ev *events.UploadEvent) bool {
	switch ev.Kind {
	case events.UploadOpen:
		return ev.Presigned != nil
	case events.UploadNumberedPart, events.UploadReport, events.UploadComplete:
		return true
	}
	return false
}

// applyPresigned is apply for isPresigned events: pure, as apply is. What
// the event frees (a part replaced by a later PUT, parts a complete leaves
// out, a part the session does not take) is listed in st.release, and a
// completion sets st.concat, for effects to act on.
func applyPresigned(st *state, ev *events.UploadEvent, p int, seq uint64) *state {
	if ev.Kind == events.UploadOpen {
		if st != nil || ev.Meta == nil {
			return st // opened twice (a retried publish): the first wins
		}
		return &state{Session: session.Session{DataID: ev.DataID, Status: session.Uploading,
			CreatedAt: ev.CreatedAt, ExpiresAt: ev.ExpiresAt, Partition: p, Meta: *ev.Meta,
			Presigned: &session.Presigned{Name: ev.Presigned.Name, MimeType: ev.Presigned.MimeType}}}
	}
	if st == nil {
		return nil
	}
	s := &st.Session
	pr := s.Presigned
	taken := s.Status == session.Uploading && pr != nil
	switch ev.Kind {
	case events.UploadNumberedPart:
		if !taken || ev.PartNumber < 1 || ev.Len <= 0 || !ownPartKey(s.DataID, ev.Staged) {
			if ownPartKey(s.DataID, ev.Staged) {
				st.release = append(st.release, ev.Staged)
			}
			return st
		}
		part := session.Part{Number: ev.PartNumber, Size: ev.Len, ETag: ev.ETag, Blob: ev.Staged[len(s.DataID)+1:]}
		i, found := slices.BinarySearchFunc(pr.Parts, part.Number, byNumber)
		if found {
			// A re-PUT: the latest applied counts; the bytes of the one
			// it replaces are nobody's any more.
			if old := pr.Parts[i]; old.Blob != part.Blob {
				st.release = append(st.release, old.Key(s.DataID))
			}
			pr.Parts[i] = part
		} else {
			pr.Parts = slices.Insert(pr.Parts, i, part)
		}
		s.ReceivedLength = 0
		for _, q := range pr.Parts {
			s.ReceivedLength += q.Size
		}
	case events.UploadReport:
		if !taken {
			return st
		}
		for _, t := range ev.PartTags {
			i, found := slices.BinarySearchFunc(pr.Reported, t.PartNumber, byTagNumber)
			if found {
				pr.Reported[i] = t
			} else {
				pr.Reported = slices.Insert(pr.Reported, i, t)
			}
		}
	case events.UploadComplete:
		if !taken {
			return st
		}
		parts, status, msg := choose(pr, ev)
		if status != 0 {
			pr.Refused = append(pr.Refused, session.Refusal{Seq: seq, Status: status, Err: msg})
			if len(pr.Refused) > refusalsKept {
				pr.Refused = slices.Delete(pr.Refused, 0, len(pr.Refused)-refusalsKept)
			}
			return st
		}
		var total int64
		for _, q := range parts {
			total += q.Size
		}
		for _, q := range pr.Parts {
			if !slices.Contains(parts, q) {
				st.release = append(st.release, q.Key(s.DataID)) // received, left out of the file
			}
		}
		pr.Parts = parts
		s.TotalLength, s.ReceivedLength = total, total
		s.Status = session.Complete
		st.concat = true
	}
	return st
}

// choose picks the parts a complete names, in number order, or says why
// it is refused (status and message, the part named). The list the
// complete sends is authoritative; an empty one takes the ETags the client
// reported.
func choose(pr *session.Presigned, ev *events.UploadEvent) (parts []session.Part, status int, msg string) {
	tags := ev.PartTags
	if len(tags) == 0 {
		tags = pr.Reported
	}
	if len(tags) == 0 {
		return nil, http.StatusBadRequest, "No parts to complete: list them with their etags."
	}
	tags = slices.Clone(tags)
	slices.SortFunc(tags, func(a, b events.PartTag) int { return a.PartNumber - b.PartNumber })
	var total int64
	for i, t := range tags {
		q, ok := pr.Part(t.PartNumber)
		switch {
		case !ok:
			return nil, http.StatusBadRequest, fmt.Sprintf("Part %d was not uploaded.", t.PartNumber)
		case !strings.EqualFold(q.ETag, t.ETag):
			return nil, http.StatusBadRequest, fmt.Sprintf("Part %d: etag %q does not match the part stored.", t.PartNumber, t.ETag)
		case i < len(tags)-1 && q.Size < ev.MinPartSize:
			// Only now is it known which part is the last.
			return nil, http.StatusBadRequest, fmt.Sprintf("Part %d is smaller than the minimum part size (%d bytes); only the last part may be smaller.",
				t.PartNumber, ev.MinPartSize)
		}
		total += q.Size
		parts = append(parts, q)
	}
	if ev.MaxSize > 0 && total > ev.MaxSize {
		return nil, http.StatusRequestEntityTooLarge, "File is too large for this rule."
	}
	return parts, 0, ""
}

func byNumber(p session.Part, n int) int      { return p.Number - n }
func byTagNumber(t events.PartTag, n int) int { return t.PartNumber - n }
func ownPartKey(dataID, key string) bool {
	return blob.ValidKey(key) && strings.HasPrefix(key, dataID+".p")
}
func partKeys(id string, ps []session.Part) (k []string) {
	for _, p := range ps {
		k = append(k, p.Key(id))
	}
	return k
}

// presignedEffects releases what the event freed and, when the upload just
// completed, makes the file: before its result event is published, so the
// scanner finds it. Both are idempotent: a redelivered event redoes them.
func (a *Assembler) presignedEffects(ctx context.Context, st *state) error {
	for _, k := range st.release {
		if err := a.blobs.Delete(ctx, k); err != nil {
			return fmt.Errorf("release part %s: %w", k, err)
		}
	}
	if !st.concat {
		return nil
	}
	cc, ok := a.blobs.(blob.Concatenator)
	if !ok {
		return fmt.Errorf("the blob store (%T) cannot concatenate parts", a.blobs)
	}
	s := &st.Session
	if err := cc.Concat(ctx, s.DataID, partKeys(s.DataID, s.Presigned.Parts)); err != nil {
		return fmt.Errorf("concatenate parts: %w", err)
	}
	return nil
}

// releaseParts deletes every part of a pre-signed upload that ended
// without a file (cancelled, timed out).
func (a *Assembler) releaseParts(ctx context.Context, s *session.Session) error {
	if s.Presigned == nil {
		return nil
	}
	for _, k := range partKeys(s.DataID, s.Presigned.Parts) {
		if err := a.blobs.Delete(ctx, k); err != nil {
			return fmt.Errorf("release part %s: %w", k, err)
		}
	}
	return nil
}

// dropLatePart releases the blob of a part whose event came after its
// upload ended (its PUT raced the complete, the cancel or the expiry),
// unless the file is made of it: a part event applied before the end and
// delivered again (its acknowledgement lost) names a blob the file reads.
func (a *Assembler) dropLatePart(ctx context.Context, ev *events.UploadEvent, view *session.Session) error {
	if !ownPartKey(ev.DataID, ev.Staged) {
		return nil
	}
	if view != nil && view.Status == session.Complete && view.Presigned != nil {
		if q, ok := view.Presigned.Part(ev.PartNumber); ok && q.Key(ev.DataID) == ev.Staged {
			return nil
		}
	}
	return a.blobs.Delete(ctx, ev.Staged)
}
