package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A card in the shape of the A2A specification's example, with fields the
// manifest does not take (they are accepted and ignored).
const sampleCard = `{
  "protocolVersion": "0.3.0",
  "name": "GeoSpatial Route Planner Agent",
  "description": "Provides advanced route planning.",
  "url": "https://georoute-agent.example.com/a2a/v1",
  "preferredTransport": "JSONRPC",
  "additionalInterfaces": [
    {"url": "https://georoute-agent.example.com/a2a/v1", "transport": "JSONRPC"},
    {"url": "https://georoute-agent.example.com/a2a/grpc", "transport": "GRPC"}
  ],
  "provider": {"organization": "Example Geo Services Inc.", "url": "https://www.examplegeoservices.com"},
  "version": "1.2.0",
  "capabilities": {"streaming": true, "pushNotifications": true},
  "securitySchemes": {"google": {"type": "openIdConnect", "openIdConnectUrl": "https://accounts.google.com/.well-known/openid-configuration"}},
  "defaultInputModes": ["application/json", "text/plain"],
  "skills": [
    {"id": "route-optimizer-traffic", "name": "Traffic-Aware Route Optimizer", "description": "Calculates the optimal route.", "tags": ["maps", "routing"], "examples": ["Plan a route"]}
  ]
}`

func TestManifestFromA2ACard(t *testing.T) {
	m, err := ManifestFromA2ACard([]byte(sampleCard), A2AImport{Tenant: "acme", Capabilities: []string{"maps.*"}})
	if err != nil {
		t.Fatal(err)
	}
	want := AgentManifest{
		ID: "geospatial-route-planner-agent", Name: "GeoSpatial Route Planner Agent",
		Description: "Provides advanced route planning.", Tenant: "acme", Version: "1.2.0",
		Capabilities: []string{"maps.*"},
		Labels:       map[string]string{"provider": "Example Geo Services Inc."},
		Skills:       []AgentSkill{{ID: "route-optimizer-traffic", Name: "Traffic-Aware Route Optimizer", Description: "Calculates the optimal route.", Tags: []string{"maps", "routing"}}},
		Endpoints: []AgentEndpoint{
			{URL: "https://georoute-agent.example.com/a2a/v1", Protocol: "a2a+jsonrpc"},
			{URL: "https://georoute-agent.example.com/a2a/grpc", Protocol: "a2a+grpc"},
		},
	}
	if !reflect.DeepEqual(m, want) {
		g, _ := json.MarshalIndent(m, "", " ")
		t.Fatalf("got\n%s", g)
	}
}

func TestManifestFromA2ACardErrors(t *testing.T) {
	for _, card := range []string{``, `[]`, `{"name": 3}`, `{"version": "1"}`, `{"name": "x"}`, `{"name":"x","version":"1"} {}`} {
		if _, err := ManifestFromA2ACard([]byte(card), A2AImport{}); err == nil {
			t.Errorf("%q: no error", card)
		}
	}
}

func FuzzA2ACard(f *testing.F) {
	f.Add([]byte(sampleCard))
	f.Add([]byte(`{"name":"a","version":"1","skills":[{}]}`))
	f.Fuzz(func(t *testing.T, card []byte) {
		m, err := ManifestFromA2ACard(card, A2AImport{})
		if err != nil {
			return
		}
		if m.Name == "" || m.Version == "" {
			t.Fatalf("accepted a card without name or version: %+v", m)
		}
	})
}
