package api_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/deskmail/deskmail/store"
)

const benchTickets = 100_000

var (
	benchOnce sync.Once
	benchDB   string
	benchErr  error
)

// benchDatabase builds, once per test binary run, a database of
// 100,000 tickets, each with the customer's mail and an agent's reply,
// written in big transactions through the store.
func benchDatabase(b *testing.B) string {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deskmail-api-bench")
		if err != nil {
			benchErr = err
			return
		}
		benchDB = filepath.Join(dir, "deskmail.db")
		h := newHarness(b, hopts{dbPath: benchDB}) // schema, config, agents, keys
		start := time.Now()
		ctx := context.Background()
		var contacts []int64
		var agentID int64
		benchErr = h.st.Write(ctx, func(tx *store.Tx) error {
			for i := 0; i < 1000; i++ {
				c, _, err := tx.EnsureContact(fmt.Sprintf("customer%d@bench.example", i), fmt.Sprintf("Customer %d", i))
				if err != nil {
					return err
				}
				contacts = append(contacts, c.ID)
			}
			a, err := tx.AgentByEmail(alice)
			agentID = a.ID
			return err
		})
		ch := int64(1)
		for done := 0; done < benchTickets && benchErr == nil; {
			benchErr = h.st.Write(ctx, func(tx *store.Tx) error {
				for i := 0; i < 20_000 && done < benchTickets; i, done = i+1, done+1 {
					cid := contacts[done%len(contacts)]
					tk := &store.Ticket{Subject: fmt.Sprintf("Ticket %d about the printer", done), Status: 2 + done%4, Priority: 1 + done%4,
						RequesterID: cid, ChannelID: &ch, Tags: []string{"bench"}}
					if err := tx.CreateTicket(tk); err != nil {
						return err
					}
					in := &store.Conversation{TicketID: tk.ID, Incoming: true, ContactID: &cid, FromEmail: "customer@bench.example",
						Subject: tk.Subject, BodyText: "My printer prints blank pages since Monday.", ReplyText: "My printer prints blank pages since Monday.",
						MessageID: fmt.Sprintf("bench-%d@bench.example", done)}
					if err := tx.AddConversation(in); err != nil {
						return err
					}
					out := &store.Conversation{TicketID: tk.ID, AgentID: &agentID, FromEmail: alice, Subject: "Re: " + tk.Subject,
						BodyText: "Please try a new cartridge.", BodyHTML: "<p>Please try a new cartridge.</p>", ReplyText: "Please try a new cartridge."}
					if err := tx.AddConversation(out); err != nil {
						return err
					}
				}
				return nil
			})
		}
		b.Logf("built %d tickets in %v", benchTickets, time.Since(start).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

// BenchmarkTicketView serves GET /api/v2/tickets/{id}?include=conversations
// on 100,000 tickets to 32 concurrent clients over loopback and reports
// requests per second.
func BenchmarkTicketView(b *testing.B) {
	db := benchDatabase(b)
	h := newHarness(b, hopts{dbPath: db})
	auth := basic(h.keys[alice])
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	const clients = 32
	b.SetParallelism((clients + runtimeProcs() - 1) / runtimeProcs())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 32<<10)
		for pb.Next() {
			id := 1 + rand.IntN(benchTickets)
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v2/tickets/%d?include=conversations", h.url, id), nil)
			req.Header.Set("Authorization", auth)
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := res.Body.Read(buf); err != nil {
					break
				}
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// TestMain removes the benchmark database after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	pgCluster.Stop()
	if benchDB != "" {
		os.RemoveAll(filepath.Dir(benchDB))
	}
	os.Exit(code)
}
