package ciformat

import (
	"errors"
	"io"
	"path/filepath"
	"strings"

	"github.com/sqlworker/worker/soak/internal/compare"
	"github.com/sqlworker/worker/soak/internal/report"
)

// WriteSoak writes junit.xml and summary.md of rep into dir, and appends
// the summary to $GITHUB_STEP_SUMMARY when it is set.
func WriteSoak(dir string, rep *report.Report) error {
	var md strings.Builder
	_ = SoakMarkdown(&md, rep) // a strings.Builder does not fail
	return errors.Join(
		SoakJUnit(rep).WriteFile(filepath.Join(dir, JUnitFile)),
		writeString(filepath.Join(dir, MarkdownFile), md.String()),
		AppendStepSummary(md.String()),
	)
}

// WriteCompare writes compare.json, compare-junit.xml and compare.md of r
// into dir, and appends the summary to $GITHUB_STEP_SUMMARY when it is
// set.
func WriteCompare(dir string, r *compare.Result) error {
	var md strings.Builder
	_ = CompareMarkdown(&md, r)
	return errors.Join(
		report.WriteFile(filepath.Join(dir, CompareJSONFile), r.WriteJSON),
		CompareJUnit(r).WriteFile(filepath.Join(dir, CompareJUnitFile)),
		writeString(filepath.Join(dir, CompareMarkdownFile), md.String()),
		AppendStepSummary(md.String()),
	)
}

func writeString(path, s string) error {
	return report.WriteFile(path, func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	})
}
