package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// resourceServer is an MCP server of our own over streamable HTTP with
// five notes, a secret (policy denies reading it), a prompt the policy
// hides and one it shows, paged two items at a time; reads counts what
// the server was asked to read.
type resourceServer struct {
	url   string
	srv   *mcp.Server
	mu    sync.Mutex
	reads map[string]int
	subs  map[string]int // subscribe +1, unsubscribe -1, by URI
}

func (rs *resourceServer) subscribed(uri string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.subs[uri]
}

func (rs *resourceServer) count(uri string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.reads[uri]
}

func newResourceServer(t *testing.T) *resourceServer {
	rs := &resourceServer{reads: map[string]int{}, subs: map[string]int{}}
	sub := func(uri string, d int) {
		rs.mu.Lock()
		rs.subs[uri] += d
		rs.mu.Unlock()
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "own-resources", Version: "1"}, &mcp.ServerOptions{PageSize: 2,
		SubscribeHandler:   func(_ context.Context, r *mcp.SubscribeRequest) error { sub(r.Params.URI, 1); return nil },
		UnsubscribeHandler: func(_ context.Context, r *mcp.UnsubscribeRequest) error { sub(r.Params.URI, -1); return nil },
	})
	rs.srv = srv
	read := func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		rs.mu.Lock()
		rs.reads[r.Params.URI]++
		rs.mu.Unlock()
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, MIMEType: "text/plain", Text: "text of " + r.Params.URI}}}, nil
	}
	for i := 1; i <= 5; i++ {
		srv.AddResource(&mcp.Resource{URI: fmt.Sprintf("note://%d", i), Name: fmt.Sprintf("note-%d", i)}, read)
	}
	srv.AddResource(&mcp.Resource{URI: "secret://plans", Name: "plans"}, read)
	prompt := func(_ context.Context, r *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.ResourceLink{URI: "note://1", Name: "note-1"}}}}, nil
	}
	addGreet(srv, "Greets someone.") // an orchestra has at least one action
	srv.AddPrompt(&mcp.Prompt{Name: "hidden"}, prompt)
	srv.AddPrompt(&mcp.Prompt{Name: "linked"}, prompt)
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(ts.Close)
	rs.url = ts.URL
	return rs
}

func resourceURIs(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	var out []string
	for r, err := range s.Resources(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.URI)
	}
	return out
}

// TestResourcesPromptsCompletions: the orchestras' resources, templates
// and prompts are listed under prefixed names, filtered by policy and
// paged; reads, prompts and completions reach the owning server; a read
// that policy denies is a JSON-RPC error, audited, and never reaches the
// server.
func TestResourcesPromptsCompletions(t *testing.T) {
	own := newResourceServer(t)
	e := setup(t, api.Orchestra{Name: "own", Backend: api.Backend{Type: api.BackendMCP, URL: own.url}})
	s := e.goClient("bot", nil)
	ctx := context.Background()

	caps := s.InitializeResult().Capabilities
	if caps.Resources == nil || caps.Prompts == nil || caps.Completions == nil {
		t.Fatalf("capabilities: want resources, prompts and completions advertised (server-everything has them), got %+v", caps)
	}

	// Resources: every page, both servers, the secret filtered out.
	uris := resourceURIs(t, s)
	for _, want := range []string{"own+note://1", "own+note://5", "everything+demo://resource/static/document/features.md"} {
		if !slices.Contains(uris, want) {
			t.Errorf("resources/list lacks %s: %v", want, uris)
		}
	}
	if slices.Contains(uris, "own+secret://plans") {
		t.Errorf("resources/list shows the secret policy denies: %v", uris)
	}
	if !slices.IsSorted(uris) {
		t.Errorf("resources/list is not in order: %v", uris)
	}
	first, err := s.ListResources(ctx, nil)
	if err != nil || len(first.Resources) != 3 || first.NextCursor == "" {
		t.Fatalf("first page: want 3 resources and a cursor, got %+v %v", first, err)
	}
	if _, err := s.ListResources(ctx, &mcp.ListResourcesParams{Cursor: "not base64!"}); err == nil || !strings.Contains(err.Error(), "invalid cursor") {
		t.Errorf("a bad cursor: want invalid cursor, got %v", err)
	}

	// Read: routed to the owning server, URIs in the answer prefixed.
	r, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "everything+demo://resource/static/document/features.md"})
	if err != nil || len(r.Contents) != 1 || r.Contents[0].URI != "everything+demo://resource/static/document/features.md" || r.Contents[0].Text == "" {
		t.Fatalf("read features.md: %+v %v", r, err)
	}
	if r, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "own+note://2"}); err != nil || r.Contents[0].Text != "text of note://2" || own.count("note://2") != 1 {
		t.Fatalf("read own+note://2: %+v %v (server saw %d reads)", r, err, own.count("note://2"))
	}

	// Deny: a JSON-RPC error, audited, the server never asked.
	_, err = s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "own+secret://plans"})
	if err == nil || !strings.Contains(err.Error(), "secrets are not for agents") {
		t.Fatalf("read the secret: want the policy's denial, got %v", err)
	}
	if n := own.count("secret://plans"); n != 0 {
		t.Fatalf("the server was asked for the denied resource %d times", n)
	}
	recs, err := e.n.Audit.Query(audit.Filter{Kind: "mcp", Action: "mcp.resources.read"})
	if err != nil {
		t.Fatal(err)
	}
	var denied, allowed bool
	for _, rec := range recs {
		switch {
		case rec.Resource == "resource:own+secret://plans" && rec.Decision == "deny" && slices.Contains(rec.Rules, "mcp/no-secrets"):
			denied = true
		case rec.Resource == "resource:own+note://2" && rec.Decision == "allow" && rec.Status == api.InvocationCompleted:
			allowed = true
		}
	}
	if !denied || !allowed {
		t.Fatalf("audit of resources/read: denied %v allowed %v in %+v", denied, allowed, recs)
	}
	// Unknown orchestras and unprefixed URIs are refused, not guessed.
	for _, uri := range []string{"demo://resource/static/document/features.md", "nowhere+x://y"} {
		if _, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil {
			t.Errorf("read %s: want an error", uri)
		}
	}

	// Templates: prefixed, and a URI made from one reads through.
	var templates []string
	for tm, err := range s.ResourceTemplates(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, tm.URITemplate)
	}
	if !slices.Contains(templates, "everything+demo://resource/dynamic/text/{resourceId}") {
		t.Fatalf("templates: %v", templates)
	}
	if r, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "everything+demo://resource/dynamic/text/3"}); err != nil || !strings.Contains(r.Contents[0].Text, "Resource 3") {
		t.Fatalf("read from the template: %+v %v", r, err)
	}

	// Prompts: prefixed, the hidden one filtered out, gets routed.
	var prompts []string
	for p, err := range s.Prompts(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		prompts = append(prompts, p.Name)
	}
	for _, want := range []string{"everything.simple-prompt", "everything.completable-prompt", "own.linked"} {
		if !slices.Contains(prompts, want) {
			t.Errorf("prompts/list lacks %s: %v", want, prompts)
		}
	}
	if slices.Contains(prompts, "own.hidden") {
		t.Errorf("prompts/list shows own.hidden, which policy denies: %v", prompts)
	}
	gp, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: "everything.simple-prompt"})
	if err != nil || len(gp.Messages) != 1 || !strings.Contains(gp.Messages[0].Content.(*mcp.TextContent).Text, "simple prompt") {
		t.Fatalf("get simple-prompt: %+v %v", gp, err)
	}
	gp, err = s.GetPrompt(ctx, &mcp.GetPromptParams{Name: "everything.resource-prompt", Arguments: map[string]string{"resourceType": "Text", "resourceId": "2"}})
	if err != nil || len(gp.Messages) != 2 {
		t.Fatalf("get resource-prompt: %+v %v", gp, err)
	}
	if er, ok := gp.Messages[1].Content.(*mcp.EmbeddedResource); !ok || er.Resource.URI != "everything+demo://resource/dynamic/text/2" {
		t.Fatalf("the embedded resource's URI is not the kernel's: %#v", gp.Messages[1].Content)
	}
	if gp, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: "own.linked"}); err != nil || gp.Messages[0].Content.(*mcp.ResourceLink).URI != "own+note://1" {
		t.Fatalf("get own.linked: %+v %v", gp, err)
	}
	if _, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: "own.hidden"}); err == nil {
		t.Fatal("get own.hidden: want the policy's denial")
	}

	// Completions, for a prompt's argument and a template's variable.
	cr, err := s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "everything.completable-prompt"},
		Argument: mcp.CompleteParamsArgument{Name: "department", Value: "E"}})
	if err != nil || !slices.Equal(cr.Completion.Values, []string{"Engineering"}) {
		t.Fatalf("complete department E: %+v %v", cr, err)
	}
	cr, err = s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: "everything+demo://resource/dynamic/text/{resourceId}"},
		Argument: mcp.CompleteParamsArgument{Name: "resourceId", Value: "7"}})
	if err != nil || !slices.Equal(cr.Completion.Values, []string{"7"}) {
		t.Fatalf("complete resourceId 7: %+v %v", cr, err)
	}

	// The TypeScript SDK's client sees the same.
	res := e.tsClient("bot", []map[string]any{
		{"method": "resources/list"},
		{"method": "resources/read", "params": map[string]any{"uri": "own+note://3"}},
		{"method": "resources/read", "params": map[string]any{"uri": "own+secret://plans"}},
		{"method": "prompts/get", "params": map[string]any{"name": "everything.simple-prompt"}},
		{"method": "completion/complete", "params": map[string]any{"ref": map[string]any{"type": "ref/prompt", "name": "everything.completable-prompt"}, "argument": map[string]any{"name": "department", "value": "S"}}},
	})
	b, _ := json.Marshal(res)
	if res[0]["error"] != nil || !strings.Contains(string(b), `"nextCursor"`) {
		t.Errorf("ts resources/list: %s", b)
	}
	if !strings.Contains(string(b), "text of note://3") || !strings.Contains(string(b), "simple prompt") || !strings.Contains(string(b), "Sales") || !strings.Contains(string(b), "Support") {
		t.Errorf("ts read, get, complete: %s", b)
	}
	if res[2]["error"] == nil || own.count("secret://plans") != 0 {
		t.Errorf("ts read of the secret: want an error and no read, got %v", res[2])
	}
}

// TestResourcesStoppedByKillSwitch: a killed agent lists no resources and
// reads none.
func TestResourcesStoppedByKillSwitch(t *testing.T) {
	e := setup(t)
	s := e.goClient("bot", nil)
	if len(resourceURIs(t, s)) == 0 {
		t.Fatal("no resources before the kill")
	}
	if _, err := e.alice.Kill(context.Background(), api.KillRequest{Scope: api.KillAgent, Target: "bot", Reason: "test", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	s2 := e.goClient("bot", nil)
	if got := resourceURIs(t, s2); len(got) != 0 {
		t.Errorf("a killed agent lists %v", got)
	}
	if _, err := s2.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "everything+demo://resource/static/document/features.md"}); err == nil || !strings.Contains(err.Error(), "kill switch") {
		t.Errorf("a killed agent's read: %v", err)
	}
}

// TestListChangedPerSession: a kill switch tells only the sessions whose
// visible tools it changed.
func TestListChangedPerSession(t *testing.T) {
	e := setup(t)
	watch := func(agent string) (*mcp.ClientSession, chan struct{}) {
		ch := make(chan struct{}, 8)
		s := e.goClient(agent, &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { ch <- struct{}{} }})
		return s, ch
	}
	bot, botCh := watch("bot")
	narrow, narrowCh := watch("narrow") // sees everything.echo only
	toolNames(t, bot)
	kill := func(target string) {
		if _, err := e.alice.Kill(context.Background(), api.KillRequest{Scope: api.KillAction, Target: target, Reason: "test", By: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	kill("everything.get-sum")
	select {
	case <-botCh:
	case <-time.After(nodetest.WaitLong):
		t.Fatal("bot, whose list lost everything.get-sum, was not told")
	}
	select {
	case <-narrowCh:
		t.Fatal("narrow, whose list did not change, was told")
	case <-time.After(time.Second):
	}
	if slices.Contains(toolNames(t, bot), "everything.get-sum") {
		t.Fatal("the killed tool is still listed")
	}
	kill("everything.echo")
	for name, ch := range map[string]chan struct{}{"narrow": narrowCh, "bot": botCh} {
		select {
		case <-ch:
		case <-time.After(nodetest.WaitLong):
			t.Fatalf("%s, whose list lost everything.echo, was not told", name)
		}
	}
	if got := toolNames(t, narrow); len(got) != 0 {
		t.Fatalf("narrow lists %v after the kill of its one tool", got)
	}
}

// TestResourceSubscriptions: a subscription reaches the server once however
// many sessions want it, the server's resources/updated reaches the
// subscribers under the kernel's URI, the last unsubscribe unsubscribes
// upstream, and policy decides subscribing.
func TestResourceSubscriptions(t *testing.T) {
	own := newResourceServer(t)
	e := setup(t, api.Orchestra{Name: "own", Backend: api.Backend{Type: api.BackendMCP, URL: own.url}})
	ctx := context.Background()
	watch := func() (*mcp.ClientSession, chan string) {
		ch := make(chan string, 8)
		s := e.goClient("bot", &mcp.ClientOptions{ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) { ch <- r.Params.URI }})
		return s, ch
	}
	a, aCh := watch()
	b, bCh := watch()
	if c := a.InitializeResult().Capabilities.Resources; c == nil || !c.Subscribe {
		t.Fatalf("resources capability without subscribe: %+v", c)
	}
	for _, s := range []*mcp.ClientSession{a, b} {
		if err := s.Subscribe(ctx, &mcp.SubscribeParams{URI: "own+note://1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := own.subscribed("note://1"); n != 1 {
		t.Fatalf("the server has %d subscriptions to note://1, want 1", n)
	}
	own.srv.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "note://1"})
	for name, ch := range map[string]chan string{"a": aCh, "b": bCh} {
		select {
		case uri := <-ch:
			if uri != "own+note://1" {
				t.Fatalf("%s was told of %q", name, uri)
			}
		case <-time.After(nodetest.WaitLong):
			t.Fatalf("%s was not told of the update", name)
		}
	}
	if err := a.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "own+note://1"}); err != nil {
		t.Fatal(err)
	}
	if n := own.subscribed("note://1"); n != 1 {
		t.Fatalf("after one of two unsubscribed, the server has %d subscriptions, want 1", n)
	}
	if err := b.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "own+note://1"}); err != nil {
		t.Fatal(err)
	}
	if n := own.subscribed("note://1"); n != 0 {
		t.Fatalf("after both unsubscribed, the server has %d subscriptions, want 0", n)
	}
	// Policy decides: the secret cannot be subscribed to, and the server
	// never hears of it.
	if err := a.Subscribe(ctx, &mcp.SubscribeParams{URI: "own+secret://plans"}); err == nil || !strings.Contains(err.Error(), "secrets are not for agents") {
		t.Fatalf("subscribe to the secret: %v", err)
	}
	if n := own.subscribed("secret://plans"); n != 0 {
		t.Fatalf("the server was asked to subscribe to the secret")
	}
	if err := a.Subscribe(ctx, &mcp.SubscribeParams{URI: "nowhere+x://y"}); err == nil {
		t.Fatal("subscribe to an unknown orchestra's resource: want an error")
	}
	// A session that ends without unsubscribing: the next update finds no
	// subscriber and unsubscribes upstream.
	if err := a.Subscribe(ctx, &mcp.SubscribeParams{URI: "own+note://2"}); err != nil || own.subscribed("note://2") != 1 {
		t.Fatalf("subscribe note://2: %v", err)
	}
	a.Close()
	deadline := time.Now().Add(nodetest.WaitLong)
	for own.subscribed("note://2") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server is still subscribed for a session that ended")
		}
		own.srv.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "note://2"})
		time.Sleep(50 * time.Millisecond)
	}
}
