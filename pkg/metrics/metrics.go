// Package metrics defines the Prometheus metrics of a gateway replica. Labels
// are bounded: no room or user ever becomes a label.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors the gateway and the hub update.
type Metrics struct {
	ConnsOpen            prometheus.Gauge
	ConnsOpened          prometheus.Counter
	ConnsClosed          *prometheus.CounterVec // reason
	MessagesReceived     prometheus.Counter
	MessagesAppended     prometheus.Counter
	MessagesDeduplicated prometheus.Counter
	Deliveries           prometheus.Counter
	AppendSeconds        prometheus.Histogram
	AppendBatch          prometheus.Histogram
	DeliverySeconds      prometheus.Histogram
	RedisErrors          *prometheus.CounterVec // op
	Tailers              prometheus.Gauge
	CatchUpReads         prometheus.Counter
	RateLimited          prometheus.Counter
	Rejected             *prometheus.CounterVec // code
}

// Close reasons, the only values of the reason label.
const (
	ReasonClient    = "client"
	ReasonShutdown  = "shutdown"
	ReasonLagged    = "lagged"
	ReasonTimeout   = "timeout"
	ReasonTooLarge  = "too_large"
	ReasonJoinError = "join_error"
	ReasonRefused   = "refused" // the handshake was refused (bad room or name)
	ReasonError     = "error"
)

// New registers the metrics with reg, with the Go and process collectors and
// build_info carrying version.
func New(reg prometheus.Registerer, version string) *Metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		ConnsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "streamchat", Name: "connections_open", Help: "Open websocket connections."}),
		ConnsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "connections_opened_total", Help: "Websocket connections that joined a room."}),
		ConnsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "connections_closed_total", Help: "Websocket connections closed, by reason."}, []string{"reason"}),
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "messages_received_total", Help: "Client frames received."}),
		MessagesAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "messages_appended_total", Help: "Messages stored in Redis."}),
		MessagesDeduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "messages_deduplicated_total", Help: "Messages not stored again: a repeat of a nonce its sender had stored within the dedupe window."}),
		Deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "deliveries_total", Help: "Stream entries written to websockets."}),
		AppendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "streamchat", Name: "append_seconds", Help: "Time to store a message (XADD).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		AppendBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "streamchat", Name: "append_batch_size", Help: "Messages per Redis pipeline with CHAT_APPEND_LINGER.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 8)}),
		DeliverySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "streamchat", Name: "delivery_seconds", Help: "From the stream entry's time (its ID) to its websocket write.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		RedisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "redis_errors_total", Help: "Failed Redis operations, by operation."}, []string{"op"}),
		Tailers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "streamchat", Name: "room_tailers", Help: "Active stream readers (shared mode: one per Redis node with active rooms)."}),
		CatchUpReads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "catchup_reads_total", Help: "Reads from Redis by connections behind their room's window (slow or resuming)."}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "rate_limited_total", Help: "Client frames dropped by the rate limit."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "streamchat", Name: "frames_rejected_total", Help: "Client frames answered with an error event, by code."}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.ConnsOpen, m.ConnsOpened, m.ConnsClosed, m.MessagesReceived, m.MessagesAppended, m.MessagesDeduplicated,
		m.Deliveries, m.AppendSeconds, m.AppendBatch, m.DeliverySeconds, m.RedisErrors, m.Tailers, m.CatchUpReads, m.RateLimited, m.Rejected} {
		f(c)
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "streamchat", Name: "build_info", Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": version}})
	buildInfo.Set(1)
	f(buildInfo)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Discard returns metrics registered nowhere, for tests and tools that do
// not export them.
func Discard() *Metrics { return New(prometheus.NewRegistry(), "none") }

// Since is the seconds since t, for histograms.
func Since(t time.Time) float64 { return time.Since(t).Seconds() }
