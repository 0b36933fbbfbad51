package e2e

import (
	"archive/zip"
	"bytes"
	"fmt"
	"strings"
	"testing"
)

var peHead = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), make([]byte, 300)...)

// The file-type steps: a renamed executable is a Mismatch (17); a blocked
// type is refused (46); the workflow's block list decides what blocks.
func TestFileTypeStepsAndBlockPolicy(t *testing.T) {
	cfg := testConfig(t)
	cfg.Workflows = append(cfg.Workflows, cfg.Workflows[0], cfg.Workflows[0])
	cfg.Workflows[1].Name, cfg.Workflows[1].Default = "NoExe", false
	cfg.Workflows[1].FileType.Block = []string{"exe"}
	cfg.Workflows[2].Name, cfg.Workflows[2].Default = "OnlySuspicious", false
	cfg.Workflows[2].Block = []string{"suspicious"}
	n := startNode(t, cfg)

	r := waitResult(t, n.URL(""), mustUpload(t, n.URL(""), peHead, map[string]string{"filename": "invoice.pdf"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(17) || path(r, "process_info", "blocked_reason") != "Mismatch" {
		t.Errorf("renamed executable: %v %v", r["scan_results"], r["process_info"])
	}
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), peHead, map[string]string{"filename": "setup.exe"}))
	if path(r, "process_info", "result") != "Allowed" {
		t.Errorf("honestly named executable under the default workflow: %v", r["process_info"])
	}
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), peHead, map[string]string{"filename": "setup.exe", "rule": "NoExe"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(46) || path(r, "process_info", "result") != "Blocked" {
		t.Errorf("blocked type: %v %v", r["scan_results"], r["process_info"])
	}
	// EICAR under a workflow that blocks only "suspicious": reported, not blocked.
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), eicar(), map[string]string{"rule": "OnlySuspicious"}))
	if path(r, "scan_results", "scan_all_result_i") != float64(1) || path(r, "process_info", "result") != "Allowed" {
		t.Errorf("infected under block=[suspicious]: %v %v", r["scan_results"], r["process_info"])
	}
	// Every blocking reason is listed, most severe first.
	r = waitResult(t, n.URL(""), mustUpload(t, n.URL(""), eicar(), map[string]string{"filename": "eicar.pdf"}))
	reasons := fmt.Sprint(path(r, "process_info", "blocked_reasons"))
	if reasons != "[Infected Mismatch]" || path(r, "process_info", "blocked_reason") != "Infected" {
		t.Errorf("blocked_reasons %s", reasons)
	}
}

func TestStatEngines(t *testing.T) {
	n := startNode(t, testConfig(t))
	var list []map[string]any
	waitFor(t, "the scanner to register", func() bool {
		getJSON(t, n.URL("/stat/engines"), &list)
		return len(list) > 0
	})
	e := list[len(list)-1]
	for _, e := range list {
		checkEngine(t, e)
	}
	if !strings.Contains(fmt.Sprint(list), "signatures") || e["type"] != "engine" {
		t.Errorf("GET /stat/engines = %v", list)
	}
}

// zipOf builds a zip of name → content.
func zipOf(t testing.TB, files map[string][]byte, order ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, name := range order {
		f, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(files[name])
	}
	w.Close()
	return b.Bytes()
}
