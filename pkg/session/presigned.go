package session

import (
	"slices"

	"github.com/scangate/scangate/pkg/events"
)

// Presigned is what a pre-signed part upload keeps besides the common
// session fields. Parts arrive by number, each stored whole in a blob of
// its own; at complete the file becomes their concatenation, in part
// number order, and TotalLength is known at last.
type Presigned struct {
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	// Parts are the parts received, by part number, the latest PUT of each;
	// once the upload is complete, the parts the file is made of.
	Parts []Part `json:"parts,omitempty"`
	// Reported are the ETags the client reported holding (PUT
	// /file/v1/files/upload/parts/{id}), by part number. Complete uses
	// them for the parts its own list leaves out.
	Reported []events.PartTag `json:"reported,omitempty"`
	// Refused are the latest completes that were refused, by the stream
	// sequence of their event, so the request that sent one can say why.
	Refused []Refusal `json:"refused,omitempty"`
}

// Part is one stored part.
type Part struct {
	Number int    `json:"n"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"` // hex md5 of its bytes
	// Blob is the part's blob key after "<data_id>.": short, since a view
	// lists up to presigned.max_parts of them.
	Blob string `json:"blob"`
}

// Key is the part's blob key in upload dataID.
func (p Part) Key(dataID string) string { return dataID + "." + p.Blob }

// Refusal is a complete that was refused, with the answer it gets.
type Refusal struct {
	Seq    uint64 `json:"seq"`
	Status int    `json:"status"`
	Err    string `json:"err"`
}

// Part returns part n, if it was received.
func (p *Presigned) Part(n int) (Part, bool) {
	i, ok := slices.BinarySearchFunc(p.Parts, n, func(q Part, n int) int { return q.Number - n })
	if !ok {
		return Part{}, false
	}
	return p.Parts[i], true
}

// Refusal returns the refusal of the complete at stream sequence seq.
func (p *Presigned) Refusal(seq uint64) (Refusal, bool) {
	for _, r := range p.Refused {
		if r.Seq == seq {
			return r, true
		}
	}
	return Refusal{}, false
}
