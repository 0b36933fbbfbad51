package cdr

// PDF sanitizer, built on github.com/pdfcpu/pdfcpu.
//
// The document is parsed into pdfcpu's object model (every object of the
// cross-reference table, including those packed in object streams), active
// content is cut out of that model, the model is validated in pdfcpu's
// relaxed mode and then written anew: pdfcpu writes only what is reachable
// from the catalog, with a fresh cross-reference table, so earlier
// incremental revisions, orphaned objects and whatever was unhooked below do
// not reach the output.
//
// Removed:
//   - /OpenAction (any kind, including a plain destination) and every /AA
//     (additional actions) dictionary anywhere: catalog, pages, annotations,
//     form fields, AcroForm;
//   - the /Names /JavaScript name tree and every /JS entry;
//   - action dictionaries of type JavaScript, Launch, ImportData,
//     SubmitForm, GoToR, GoToE, Rendition, RichMediaExecute, Movie, Sound,
//     Thread actions that point to another file (/F), and URI actions whose
//     URI is not http:, https: or mailto: - wherever they are referenced
//     from (/A, /Next chains, name trees, arrays); GoTo, Named, ResetForm,
//     Hide, SetOCGState, Trans and http(s) URI actions stay;
//   - embedded files: /Names /EmbeddedFiles, /EF and /RF of file
//     specifications, /EmbeddedFile streams, /AF associated files and the
//     portfolio /Collection;
//   - FileAttachment, Sound, Movie, Screen, RichMedia and 3D annotations;
//   - XFA (/AcroForm /XFA and the catalog's /NeedsRendering);
//   - encryption: a file that opens with the empty user password is
//     decrypted and written unencrypted; any other encrypted file is an
//     error.
//
// Page content, fonts, images, the outline, plain form fields and http(s)
// links are kept. Digital signatures no longer verify after the rewrite.
//
// Limits: pdfcpu needs random access and keeps the whole object model in
// memory (several times the file size for object-heavy files), so inputs
// larger than the memory budget (WithMemoryBudget) are refused with
// ErrPDFTooLarge, and pdfcpu's own limits on stream, decoded and image
// bytes are lowered to the budget. Files that pdfcpu cannot parse, or that
// fail its relaxed validation after sanitizing, are errors: no output is
// produced for them. Output is written to w as pdfcpu serializes it, so on
// an error w may hold a partial file.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// ErrPDFTooLarge: the input is larger than the memory budget. Errors
// wrapping it wrap ErrMemoryBudget too.
var ErrPDFTooLarge = errors.New("cdr: pdf larger than the memory budget")

// ErrPDFEncrypted: the PDF needs a password to open.
var ErrPDFEncrypted = errors.New("cdr: pdf is encrypted with a user password")

// PDFSanitizer removes active content from PDF documents.
type PDFSanitizer struct{}

func init() { Register(PDFSanitizer{}, "application/pdf") }

// Labels reported in Result.Removed.
const (
	pdfLabelJavaScript  = "javascript"
	pdfLabelOpenAction  = "openaction"
	pdfLabelAA          = "additional actions"
	pdfLabelLaunch      = "launch"
	pdfLabelImportData  = "importdata"
	pdfLabelSubmitForm  = "submitform"
	pdfLabelRemoteGoTo  = "remote goto"
	pdfLabelURI         = "uri"
	pdfLabelRendition   = "rendition"
	pdfLabelMultimedia  = "multimedia"
	pdfLabelAttachment  = "file attachment"
	pdfLabelEmbedded    = "embedded files"
	pdfLabelXFA         = "xfa"
	pdfLabelEncryption  = "encryption"
	pdfMaxInlineNesting = 256
)

// pdfDropKeys are dictionary keys removed wherever they occur.
var pdfDropKeys = map[string]string{
	"OpenAction":     pdfLabelOpenAction,
	"AA":             pdfLabelAA,
	"JS":             pdfLabelJavaScript,
	"JavaScript":     pdfLabelJavaScript, // name tree in /Names
	"EmbeddedFiles":  pdfLabelEmbedded,   // name tree in /Names
	"EF":             pdfLabelEmbedded,   // file specification
	"RF":             pdfLabelEmbedded,   // related files of /EF
	"AF":             pdfLabelEmbedded,   // associated files (PDF 2.0, PDF/A-3)
	"Collection":     pdfLabelEmbedded,   // portfolio
	"XFA":            pdfLabelXFA,
	"NeedsRendering": pdfLabelXFA,
}

// pdfBadAnnots are annotation subtypes removed with their annotation.
var pdfBadAnnots = map[string]string{
	"FileAttachment": pdfLabelAttachment,
	"Sound":          pdfLabelMultimedia,
	"Movie":          pdfLabelMultimedia,
	"Screen":         pdfLabelMultimedia,
	"RichMedia":      pdfLabelMultimedia,
	"3D":             pdfLabelMultimedia,
}

func pdfConfig(budget int64) *model.Configuration {
	limits := model.DefaultResourceLimits()
	limits.MaxStreamBytes = min(limits.MaxStreamBytes, budget)
	limits.MaxDecodeBytes = min(limits.MaxDecodeBytes, budget)
	limits.MaxImageBytes = min(limits.MaxImageBytes, budget)
	// Built here rather than with model.NewDefaultConfiguration, which
	// creates a config directory under the user's home on first use.
	return &model.Configuration{
		CreationDate:              time.Now().Format("2006-01-02 15:04"),
		Version:                   model.VersionStr,
		Reader15:                  true,
		ValidationMode:            model.ValidationRelaxed,
		UnsupportedResourcePolicy: model.UnsupportedResourceSkip,
		Eol:                       types.EolLF,
		WriteObjectStream:         true,
		WriteXRefStream:           true,
		EncryptUsingAES:           true,
		EncryptKeyLength:          256,
		Permissions:               model.PermissionsPrint,
		TimestampFormat:           "2006-01-02 15:04",
		DateFormat:                "2006-01-02",
		Offline:                   true,
		Timeout:                   5,
		TimeoutCRL:                10,
		TimeoutOCSP:               10,
		Limits:                    limits,
	}
}

// Sanitize implements Sanitizer.
func (PDFSanitizer) Sanitize(ctx context.Context, in io.ReaderAt, size int64, w io.Writer) (res Result, err error) {
	budget := memoryBudget(ctx)
	if size > budget {
		return Result{}, fmt.Errorf("%w (%d bytes, budget %d): %w", ErrPDFTooLarge, size, budget, ErrMemoryBudget)
	}
	if size <= 0 {
		return Result{}, errors.New("cdr: pdf: empty input")
	}
	defer func() {
		// pdfcpu panics on some malformed input.
		if r := recover(); r != nil {
			res, err = Result{}, fmt.Errorf("cdr: pdf: malformed document: %v", r)
		}
	}()

	pctx, err := pdfcpu.ReadWithContext(ctx, io.NewSectionReader(in, 0, size), pdfConfig(budget))
	if err != nil {
		if errors.Is(err, pdfcpu.ErrWrongPassword) {
			return Result{}, ErrPDFEncrypted
		}
		return Result{}, fmt.Errorf("cdr: pdf: read: %w", err)
	}
	if pctx.RootDict == nil && pctx.Root == nil {
		return Result{}, errors.New("cdr: pdf: no document catalog")
	}

	s := &pdfScrubber{xt: pctx.XRefTable, removed: map[int]bool{}, found: map[string]bool{}}
	if err := s.scrub(ctx); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := api.ValidateContext(pctx); err != nil {
		return Result{}, fmt.Errorf("cdr: pdf: validate: %w", err)
	}
	if pctx.PageCount < 1 {
		// pdfcpu's relaxed reader reconstructs damaged files; one left
		// without a page tree is of no use.
		return Result{}, errors.New("cdr: pdf: no pages")
	}
	if pctx.Encrypt != nil {
		// Write without encryption (pdfcpu drops the key for DECRYPT).
		pctx.Cmd = model.DECRYPT
		s.found[pdfLabelEncryption] = true
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := api.WriteContext(pctx, w); err != nil {
		return Result{}, fmt.Errorf("cdr: pdf: write: %w", err)
	}

	removed := make([]string, 0, len(s.found))
	for l := range s.found {
		removed = append(removed, l)
	}
	slices.Sort(removed)
	return Result{Action: Sanitized, ConvertedTo: "pdf", Removed: removed}, nil
}

// pdfScrubber cuts active content out of a pdfcpu cross-reference table.
type pdfScrubber struct {
	xt      *model.XRefTable
	removed map[int]bool // indirect objects dropped whole
	found   map[string]bool
}

// scrub runs in two passes over every object of the table: the first finds
// indirect objects to drop whole (dangerous actions, annotations, embedded
// file streams), the second deletes dangerous keys and every reference to
// a dropped object or to an inline dangerous action. The dropped objects
// are then replaced by null, so a reference that was somehow missed
// resolves to null instead of the payload.
func (s *pdfScrubber) scrub(ctx context.Context) error {
	nums := make([]int, 0, len(s.xt.Table))
	for n := range s.xt.Table {
		nums = append(nums, n)
	}
	slices.Sort(nums)

	protected := map[int]bool{}
	for _, r := range []*types.IndirectRef{s.xt.Root, s.xt.Info, s.xt.Encrypt} {
		if r != nil {
			protected[r.ObjectNumber.Value()] = true
		}
	}

	objs := make(map[int]types.Object, len(nums))
	for i, n := range nums {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e := s.xt.Table[n]
		if e == nil || e.Free || e.Object == nil {
			continue
		}
		gen := 0
		if e.Generation != nil {
			gen = *e.Generation
		}
		// Dereference decodes objects held in object streams and stores
		// the decoded object in the table, so the writer serializes the
		// scrubbed object instead of the original bytes.
		o, err := s.xt.Dereference(*types.NewIndirectRef(n, gen))
		if err != nil {
			return fmt.Errorf("cdr: pdf: object %d: %w", n, err)
		}
		if o == nil {
			continue
		}
		objs[n] = o
		if protected[n] {
			continue
		}
		if label, bad := s.dropWhole(o); bad {
			s.removed[n] = true
			s.found[label] = true
		}
	}

	for i, n := range nums {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		o, ok := objs[n]
		if !ok || s.removed[n] {
			continue
		}
		switch o := o.(type) {
		case types.Dict:
			s.cleanDict(o, 0)
		case types.StreamDict:
			s.cleanDict(o.Dict, 0)
		case types.Array:
			s.xt.Table[n].Object = s.cleanArray(o, false, 0)
		}
	}

	for n := range s.removed {
		s.xt.Table[n].Object = nil
	}
	return nil
}

// dropWhole says whether o, an indirect object, is removed entirely.
func (s *pdfScrubber) dropWhole(o types.Object) (string, bool) {
	switch o := o.(type) {
	case types.Dict:
		if label, bad := s.badAction(o); bad {
			return label, true
		}
		return s.badAnnot(o)
	case types.StreamDict:
		if t := s.name(o.Dict, "Type"); t == "EmbeddedFile" {
			return pdfLabelEmbedded, true
		}
	}
	return "", false
}

// name returns the name value of d[key], resolving an indirect reference.
func (s *pdfScrubber) name(d types.Dict, key string) string {
	o, ok := d[key]
	if !ok {
		return ""
	}
	o, err := s.xt.Dereference(o)
	if err != nil {
		return ""
	}
	if n, ok := o.(types.Name); ok {
		return string(n)
	}
	return ""
}

// badAction reports whether d is an action dictionary that must go.
func (s *pdfScrubber) badAction(d types.Dict) (string, bool) {
	if t := s.name(d, "Type"); t != "" && t != "Action" {
		return "", false
	}
	switch s.name(d, "S") {
	case "JavaScript":
		return pdfLabelJavaScript, true
	case "Launch":
		return pdfLabelLaunch, true
	case "ImportData":
		return pdfLabelImportData, true
	case "SubmitForm":
		return pdfLabelSubmitForm, true
	case "GoToR", "GoToE":
		return pdfLabelRemoteGoTo, true
	case "Thread":
		if _, ok := d["F"]; ok {
			return pdfLabelRemoteGoTo, true
		}
	case "Rendition":
		return pdfLabelRendition, true
	case "RichMediaExecute", "Movie", "Sound":
		return pdfLabelMultimedia, true
	case "URI":
		if !s.safeURI(d["URI"]) {
			return pdfLabelURI, true
		}
	}
	if _, ok := d["JS"]; ok {
		return pdfLabelJavaScript, true
	}
	return "", false
}

// safeURI accepts http, https and mailto URIs only.
func (s *pdfScrubber) safeURI(o types.Object) bool {
	o, err := s.xt.Dereference(o)
	if err != nil || o == nil {
		return false
	}
	p, err := types.StringOrHexLiteral(o)
	if err != nil || p == nil {
		return false
	}
	u := strings.ToLower(strings.TrimLeft(*p, " \t\r\n\f\v\x00"))
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "mailto:")
}

// badAnnot reports whether d is an annotation of a removed subtype.
func (s *pdfScrubber) badAnnot(d types.Dict) (string, bool) {
	if t := s.name(d, "Type"); t != "" && t != "Annot" {
		return "", false
	}
	label, bad := pdfBadAnnots[s.name(d, "Subtype")]
	return label, bad
}

// dropValue says whether a dictionary value or array element must be
// removed: a reference to a dropped object, or an inline dangerous action
// or annotation.
func (s *pdfScrubber) dropValue(o types.Object) bool {
	switch o := o.(type) {
	case types.IndirectRef:
		return s.removed[o.ObjectNumber.Value()]
	case types.Dict:
		if label, bad := s.badAction(o); bad {
			s.found[label] = true
			return true
		}
		if label, bad := s.badAnnot(o); bad {
			s.found[label] = true
			return true
		}
	}
	return false
}

// noteActions records what the additional-actions or open-action value o
// held before it is deleted.
func (s *pdfScrubber) noteActions(o types.Object) {
	o, err := s.xt.Dereference(o)
	if err != nil {
		return
	}
	d, ok := o.(types.Dict)
	if !ok {
		return
	}
	if label, bad := s.badAction(d); bad {
		s.found[label] = true
		return
	}
	for _, v := range d { // /AA: trigger -> action
		if v, err := s.xt.Dereference(v); err == nil {
			if a, ok := v.(types.Dict); ok {
				if label, bad := s.badAction(a); bad {
					s.found[label] = true
				}
			}
		}
	}
}

func (s *pdfScrubber) cleanDict(d types.Dict, depth int) {
	if depth > pdfMaxInlineNesting {
		return
	}
	for k, v := range d {
		if label, drop := pdfDropKeys[k]; drop {
			if k == "AA" || k == "OpenAction" {
				s.noteActions(v)
			}
			s.found[label] = true
			delete(d, k)
			continue
		}
		if s.dropValue(v) {
			delete(d, k)
			continue
		}
		switch v := v.(type) {
		case types.Dict:
			s.cleanDict(v, depth+1)
		case types.Array:
			// Name and number tree leaves are [key value ...] pairs.
			d[k] = s.cleanArray(v, k == "Names" || k == "Nums", depth+1)
		}
	}
}

// cleanArray drops removed elements (with their key when pairs is set)
// and cleans the rest. It returns the array to store back.
func (s *pdfScrubber) cleanArray(a types.Array, pairs bool, depth int) types.Array {
	if depth > pdfMaxInlineNesting {
		return a
	}
	out := a[:0]
	for i, v := range a {
		if s.dropValue(v) {
			if pairs && i%2 == 1 && len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		switch v := v.(type) {
		case types.Dict:
			s.cleanDict(v, depth+1)
		case types.Array:
			v = s.cleanArray(v, false, depth+1)
			out = append(out, v)
			continue
		}
		out = append(out, v)
	}
	// Clear the tail so dropped objects are not kept alive.
	clear(a[len(out):])
	return out
}
