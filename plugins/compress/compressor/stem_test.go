package compressor

import "testing"

func TestStem(t *testing.T) {
	tests := []struct{ in, want string }{
		{"paints", "paint"}, {"painting", "paint"}, {"painted", "paint"},
		{"make", "mak"}, {"making", "mak"}, {"baked", "bak"},
		{"studies", "study"}, {"studied", "study"}, {"classes", "class"},
		{"class", "class"}, {"bus", "bus"}, {"running", "run"}, {"stopped", "stop"},
		{"falling", "fall"}, {"agreed", "agreed"}, {"really", "real"}, {"kids", "kid"},
		{"dog", "dog"}, {"2024", "2024"}, {"sing", "sing"}, {"red", "red"},
	}
	for _, tt := range tests {
		if got := string(stem([]byte(tt.in))); got != tt.want {
			t.Errorf("stem(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWords(t *testing.T) {
	var got []string
	var caps []bool
	splitWords("Caroline’s dog didn't bark. Then Mel said: Paris 2024!", func(w word) {
		got = append(got, "Caroline’s dog didn't bark. Then Mel said: Paris 2024!"[w.start:w.end])
		caps = append(caps, w.capital)
	})
	want := []string{"Caroline", "dog", "didn", "bark", "Then", "Mel", "said", "Paris", "2024"}
	wantCaps := []bool{false, false, false, false, false, true, false, false, false}
	if len(got) != len(want) {
		t.Fatalf("words = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] || caps[i] != wantCaps[i] {
			t.Errorf("word %d = %q capital %v, want %q capital %v", i, got[i], caps[i], want[i], wantCaps[i])
		}
	}
}
