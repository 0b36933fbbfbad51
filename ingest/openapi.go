package ingest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/gofiber/fiber/v2"
	"go.yaml.in/yaml/v3"
)

// openAPIYAML is the API as OpenAPI 3.1. It is written as YAML so that it
// can carry comments and stay readable in review; clients get JSON.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON is openAPIYAML as JSON, converted once when the process
// starts: the document never changes while it runs, so every request is
// answered with the same bytes. The document is embedded at build time, so
// a conversion failure is a defect of the build (the package's tests load
// it), not a condition to handle.
var openAPIJSON = func() []byte {
	b, err := yamlToJSON(openAPIYAML)
	if err != nil {
		panic(fmt.Sprintf("ingest/openapi.yaml: %v", err))
	}
	return b
}()

// getOpenAPI is GET /openapi.json: this API as OpenAPI 3.1.
func (s *Server) getOpenAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(openAPIJSON)
}

// yamlToJSON converts one YAML document to compact JSON. It walks the node
// tree rather than decoding into maps, so that the keys keep the order they
// are written in (info before paths, paths as grouped in the source) —
// what a reader of the JSON, or a program listing the operations, sees.
func yamlToJSON(src []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("line %d: want one YAML document", n.Line)
		}
		return writeJSON(buf, n.Content[0])
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias)
	case yaml.MappingNode:
		buf.WriteByte('{')
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a key must be a scalar", k.Line)
			}
			if k.Tag == "!!merge" {
				return fmt.Errorf("line %d: merge keys (<<) are not supported", k.Line)
			}
			// JSON would keep one of two equal keys silently.
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
			if i > 0 {
				buf.WriteByte(',')
			}
			// A key is a string in JSON, whatever its YAML type ('200').
			if err := writeValue(buf, k.Value); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, item); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		var v any = n.Value
		// A date written unquoted is text to OpenAPI; decoding would turn
		// it into a time and write it back in another form.
		if tag := n.ShortTag(); tag != "!!str" && tag != "!!timestamp" {
			// Decoding resolves the scalar as YAML types it (!!int,
			// !!bool, !!null, ...); JSON then refuses what it cannot
			// hold, such as .inf.
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
		}
		if err := writeValue(buf, v); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		return nil
	}
	return fmt.Errorf("line %d: unexpected YAML node kind %d", n.Line, n.Kind)
}

// writeValue writes v as JSON. `<`, `>` and `&` stay as they are (the
// document's text names headers such as `<offset>-<length>/<total>`): the
// document is served as application/json, never inside HTML.
func writeValue(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode ends the value with a newline
	return nil
}
