//go:build !windows

package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// sample is one line of the Prometheus text format.
type sample struct {
	labels map[string]string
	value  float64
}

type families map[string][]sample

// scrape GETs a Prometheus text endpoint and parses it (enough of the format for counters
// and gauges: name{label="value",...} value).
func scrape(c *http.Client, url string) (families, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := families{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest, ok := parseLine(line)
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] = append(out[name], sample{labels: labels, value: v})
	}
	return out, sc.Err()
}

func parseLine(line string) (name string, labels map[string]string, rest string, ok bool) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, "", false
	}
	name = line[:i]
	labels = map[string]string{}
	if line[i] == ' ' {
		return name, labels, line[i+1:], true
	}
	j := i + 1
	for j < len(line) && line[j] != '}' {
		eq := strings.IndexByte(line[j:], '=')
		if eq < 0 {
			return "", nil, "", false
		}
		k := strings.TrimSpace(line[j : j+eq])
		j += eq + 1
		if j >= len(line) || line[j] != '"' {
			return "", nil, "", false
		}
		j++
		var b strings.Builder
		for j < len(line) && line[j] != '"' {
			if line[j] == '\\' && j+1 < len(line) {
				j++
			}
			b.WriteByte(line[j])
			j++
		}
		j++ // closing quote
		labels[k] = b.String()
		if j < len(line) && line[j] == ',' {
			j++
		}
	}
	if j >= len(line) {
		return "", nil, "", false
	}
	return name, labels, line[j+1:], true
}

// requestCounts sums apiserver_request_total by "VERB resource[/subresource]" for writes.
func requestCounts(f families) map[string]float64 {
	out := map[string]float64{}
	for _, s := range f["apiserver_request_total"] {
		switch s.labels["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "CREATE", "UPDATE":
		default:
			continue
		}
		r := s.labels["resource"]
		if sub := s.labels["subresource"]; sub != "" {
			r += "/" + sub
		}
		k := s.labels["verb"] + " " + r
		if s.labels["group"] == floorGroup {
			k = "design floor: " + k // the benchmark's own writes, never the operator's
		}
		out[k] += s.value
	}
	return out
}

// Writes classifies the API writes made during a scenario.
type Writes struct {
	// ByRequest is every write to the API server in the window, by "VERB resource[/sub]",
	// whoever made it (the benchmark, the manager, kwok, the scheduler, ...).
	ByRequest map[string]float64 `json:"byRequest"`
	// Critical: the bind's own writes (PATCH pods, PATCH/PUT agentsessions/status).
	Critical float64 `json:"critical"`
	// Operator: every write the operator makes (Critical plus pod creates, pool status,
	// session metadata, and OperatorEvents).
	Operator float64 `json:"operator"`
	// OperatorNoEvents is Operator without Events.
	OperatorNoEvents float64 `json:"operatorNoEvents"`
	// OperatorEvents are the Events the operator reported (the API server's counter has
	// no client label, so they are counted from the Events in the namespace; the
	// scheduler's Scheduled events are not the operator's).
	OperatorEvents float64 `json:"operatorEvents"`
}

func classifyWrites(before, after families) Writes {
	b, a := requestCounts(before), requestCounts(after)
	w := Writes{ByRequest: map[string]float64{}}
	for k, v := range a {
		d := v - b[k]
		if d <= 0 {
			continue
		}
		w.ByRequest[k] = d
		switch k {
		case "PATCH pods", "PUT pods", "PATCH agentsessions/status", "PUT agentsessions/status":
			w.Critical += d
			w.Operator += d
			w.OperatorNoEvents += d
		case "POST pods", "DELETE pods", "PATCH agentsandboxes/status", "PUT agentsandboxes/status",
			"PATCH agentsessions", "PUT agentsessions", "PATCH agentsandboxes", "PUT agentsandboxes":
			w.Operator += d
			w.OperatorNoEvents += d
		}
	}
	return w
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
