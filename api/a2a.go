package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxA2ACardSize bounds an A2A Agent Card read by ManifestFromA2ACard.
const MaxA2ACardSize = 1 << 20

// a2aCard is the part of an A2A Agent Card (the JSON document an A2A agent
// serves at /.well-known/agent-card.json) that maps onto a manifest. Other
// fields of the card (security schemes, modes, protocol capabilities) are
// accepted and ignored: cards evolve, and the kernel governs by its own
// capabilities, not the card's.
type a2aCard struct {
	Name               string `json:"name"`
	Description        string `json:"description"`
	URL                string `json:"url"`
	Version            string `json:"version"`
	PreferredTransport string `json:"preferredTransport"`
	Provider           *struct {
		Organization string `json:"organization"`
		URL          string `json:"url"`
	} `json:"provider"`
	Skills []struct {
		ID          string   `json:"id"`
		Name        string   `json:"name"`
		Description string   `json:"description"`
		Tags        []string `json:"tags"`
	} `json:"skills"`
	AdditionalInterfaces []struct {
		URL       string `json:"url"`
		Transport string `json:"transport"`
	} `json:"additionalInterfaces"`
}

// A2AImport is what a card does not say and a manifest needs.
type A2AImport struct {
	// ID of the agent; empty: derived from the card's name ("Travel
	// Planner" → "travel-planner").
	ID           string
	Tenant       string
	Owner        string
	Capabilities []string
	Labels       map[string]string
}

// ManifestFromA2ACard converts an A2A Agent Card into a manifest. The card's
// name, description, version, skills, url and additional interfaces become
// the manifest's fields; its provider's organization becomes the label
// "provider". The manifest still has to pass the registry's validation.
func ManifestFromA2ACard(card []byte, imp A2AImport) (AgentManifest, error) {
	var m AgentManifest
	if len(card) > MaxA2ACardSize {
		return m, fmt.Errorf("agent card: %d bytes; at most %d are allowed", len(card), MaxA2ACardSize)
	}
	var c a2aCard
	dec := json.NewDecoder(bytes.NewReader(card))
	if err := dec.Decode(&c); err != nil {
		return m, fmt.Errorf("agent card: not an A2A Agent Card (a JSON object with name, version, url, skills): %w", err)
	}
	if dec.More() {
		return m, errors.New("agent card: unexpected data after the JSON object")
	}
	if strings.TrimSpace(c.Name) == "" {
		return m, errors.New("agent card: name is missing")
	}
	if c.Version == "" {
		return m, errors.New("agent card: version is missing (a manifest's version is required and immutable)")
	}
	m = AgentManifest{
		ID: imp.ID, Name: c.Name, Description: c.Description, Version: c.Version,
		Tenant: imp.Tenant, Owner: imp.Owner, Capabilities: imp.Capabilities,
	}
	if m.ID == "" {
		m.ID = slug(c.Name)
	}
	if c.URL != "" {
		proto := "a2a"
		if c.PreferredTransport != "" {
			proto = "a2a+" + strings.ToLower(c.PreferredTransport)
		}
		m.Endpoints = append(m.Endpoints, AgentEndpoint{URL: c.URL, Protocol: proto})
	}
	for _, ai := range c.AdditionalInterfaces {
		if ai.URL == "" || (ai.URL == c.URL && strings.EqualFold(ai.Transport, c.PreferredTransport)) {
			continue
		}
		m.Endpoints = append(m.Endpoints, AgentEndpoint{URL: ai.URL, Protocol: "a2a+" + strings.ToLower(ai.Transport)})
	}
	for _, s := range c.Skills {
		m.Skills = append(m.Skills, AgentSkill{ID: s.ID, Name: s.Name, Description: s.Description, Tags: s.Tags})
	}
	if len(imp.Labels) > 0 || (c.Provider != nil && c.Provider.Organization != "") {
		m.Labels = make(map[string]string, len(imp.Labels)+1)
		if c.Provider != nil && c.Provider.Organization != "" {
			m.Labels["provider"] = c.Provider.Organization
		}
		for k, v := range imp.Labels {
			m.Labels[k] = v
		}
	}
	return m, nil
}

// slug makes an agent id of a name: lower case, runs of anything but
// letters and digits turned into one hyphen.
func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return b.String()
}
