package main

import "testing"

func TestDecodeManifest(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		ok        bool
	}{
		{"yaml", "id: a1\nversion: \"1\"\ntenant: acme\ncapabilities: [data.*]\nlabels: {team: data}\nskills:\n  - {id: sql, tags: [query]}\nendpoints:\n  - {url: 'https://a.example', protocol: a2a}\nsandbox: {network: none}\n", true},
		{"json", `{"id":"a1","version":"1"}`, true},
		{"unknown field", "id: a1\nversion: \"1\"\ncapability: [x]\n", false},
		{"not yaml", "id: [", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeManifest("manifest", []byte(tc.doc))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v", err)
			}
			if tc.ok && (m.ID != "a1" || m.Version != "1") {
				t.Fatalf("manifest %+v", m)
			}
		})
	}
}
