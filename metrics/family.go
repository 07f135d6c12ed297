package metrics

import (
	"bytes"
	"context"
	"math"
	"os"
	"runtime"
	runmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// family is one metric: a counter or histogram with its series by
// label values, or a gauge read at scrape time.
type family struct {
	name, help, kind string
	// labels are the label names, sorted (the exposition order).
	labels []string
	// order maps the caller's label order to the sorted one.
	order   []int
	buckets []float64 // histograms: upper bounds, ascending

	mu     sync.Mutex
	series map[string]*series
}

// series is one combination of label values.
type series struct {
	values []string // in sorted label order
	value  float64  // counter or gauge
	counts []uint64 // histogram: per bucket (not cumulative)
	sum    float64
	count  uint64
}

func newFamily(name, help, kind string, labels []string) *family {
	f := &family{name: name, help: help, kind: kind, series: map[string]*series{}}
	f.labels = slices.Clone(labels)
	slices.Sort(f.labels)
	for _, l := range labels {
		f.order = append(f.order, slices.Index(f.labels, l))
	}
	return f
}

// counter is a counter whose series appear from their first increment
// (one without labels is always there).
func counter(name, help string, labels ...string) *family {
	f := newFamily(name, help, "counter", labels)
	if len(labels) == 0 {
		f.get(nil)
	}
	return f
}

// histogram is a histogram without labels.
func histogram(name, help string, buckets []float64) *family {
	f := newFamily(name, help, "histogram", nil)
	f.buckets = buckets
	f.get(nil)
	return f
}

// gauge is a gauge without labels holding v.
func gauge(name, help string, v float64) *family {
	f := newFamily(name, help, "gauge", nil)
	f.get(nil).value = v
	return f
}

// exponentialBuckets returns count upper bounds from start, each factor
// times the last.
func exponentialBuckets(start, factor float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

// get returns the series of the label values (in the caller's order),
// creating it; f.mu must be held unless f is not shared yet.
func (f *family) get(values []string) *series {
	sorted := make([]string, len(f.labels))
	for i, v := range values {
		if i < len(f.order) {
			sorted[f.order[i]] = v
		}
	}
	key := strings.Join(sorted, "\xff")
	s, ok := f.series[key]
	if !ok {
		s = &series{values: sorted}
		if f.kind == "histogram" {
			s.counts = make([]uint64, len(f.buckets))
		}
		f.series[key] = s
	}
	return s
}

// add adds d to the counter series of values.
func (f *family) add(d float64, values ...string) {
	f.mu.Lock()
	f.get(values).value += d
	f.mu.Unlock()
}

// observe records v in the histogram.
func (f *family) observe(v float64) {
	f.mu.Lock()
	s := f.get(nil)
	if i, _ := slices.BinarySearch(f.buckets, v); i < len(s.counts) {
		s.counts[i]++
	}
	s.sum += v
	s.count++
	f.mu.Unlock()
}

// snapshot copies the series, sorted by label values.
func (f *family) snapshot() []series {
	f.mu.Lock()
	out := make([]series, 0, len(f.series))
	for _, s := range f.series {
		c := *s
		c.counts = slices.Clone(s.counts)
		out = append(out, c)
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b series) int { return slices.Compare(a.values, b.values) })
	return out
}

// all is every family of one scrape, sorted by name: the metrics, the
// database gauges and the runtime and process gauges.
func (m *Metrics) all(ctx context.Context) []*family {
	fams := append(slices.Clone(m.families), m.storeGauges(ctx)...)
	fams = append(fams, m.processGauges()...)
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	return fams
}

func (m *Metrics) gather(ctx context.Context) []Family {
	var out []Family
	for _, f := range m.all(ctx) {
		fam := Family{Name: f.name, Type: f.kind}
		for _, s := range f.snapshot() {
			v := s.value
			if f.kind == "histogram" {
				v = float64(s.count)
			}
			fam.Samples = append(fam.Samples, Sample{Labels: s.values, Value: v})
		}
		out = append(out, fam)
	}
	return out
}

// expose writes every family in the text exposition format.
func (m *Metrics) expose(ctx context.Context) []byte {
	var b bytes.Buffer
	for _, f := range m.all(ctx) {
		ss := f.snapshot()
		if len(ss) == 0 {
			continue
		}
		b.WriteString("# HELP " + f.name + " " + escapeHelp(f.help) + "\n# TYPE " + f.name + " " + f.kind + "\n")
		for _, s := range ss {
			if f.kind != "histogram" {
				writeSample(&b, f.name, f.labels, s.values, "", "", s.value)
				continue
			}
			var cum uint64
			for i, ub := range f.buckets {
				cum += s.counts[i]
				writeSample(&b, f.name+"_bucket", f.labels, s.values, "le", formatFloat(ub), float64(cum))
			}
			writeSample(&b, f.name+"_bucket", f.labels, s.values, "le", "+Inf", float64(s.count))
			writeSample(&b, f.name+"_sum", f.labels, s.values, "", "", s.sum)
			writeSample(&b, f.name+"_count", f.labels, s.values, "", "", float64(s.count))
		}
	}
	return b.Bytes()
}

// writeSample writes `name{l="v",…} value`, with one more label (le)
// when extra is set.
func writeSample(b *bytes.Buffer, name string, labels, values []string, extra, extraValue string, v float64) {
	b.WriteString(name)
	if len(labels) > 0 || extra != "" {
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l + `="` + escapeValue(values[i]) + `"`)
		}
		if extra != "" {
			if len(labels) > 0 {
				b.WriteByte(',')
			}
			b.WriteString(extra + `="` + extraValue + `"`)
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeValue(s string) string { return valueEscaper.Replace(s) }

// processGauges are the usual Go runtime and process metrics, under the
// names the Prometheus client's collectors give them; a gauge whose
// source cannot be read is left out.
func (m *Metrics) processGauges() []*family {
	heap := []runmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runmetrics.Read(heap)
	fams := []*family{
		gauge("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine())),
		gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", float64(m.start.UnixNano())/1e9),
	}
	if heap[0].Value.Kind() == runmetrics.KindUint64 {
		fams = append(fams, gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", float64(heap[0].Value.Uint64())))
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", float64(ru.Utime.Nano()+ru.Stime.Nano())/1e9)
		cpu.kind = "counter"
		fams = append(fams, cpu)
	}
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(statm)); len(f) > 1 {
			if pages, err := strconv.ParseFloat(f[1], 64); err == nil {
				fams = append(fams, gauge("process_resident_memory_bytes", "Resident memory size in bytes.", pages*float64(os.Getpagesize())))
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		fams = append(fams, gauge("process_open_fds", "Number of open file descriptors.", float64(len(fds))))
	}
	return fams
}
