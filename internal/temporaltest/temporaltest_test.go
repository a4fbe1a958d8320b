package temporaltest

import (
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// A payload's data is base64 in a history's JSON; HistoryText shows it
// decoded, also deep inside an event (a failure's details), so a secret
// scan can find it.
func TestHistoryTextDecodesEveryPayload(t *testing.T) {
	secret := []byte("s3cret-in-a-payload")
	h := &historypb.History{Events: []*historypb.HistoryEvent{{EventId: 1,
		Attributes: &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{
			ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{
				Result: &commonpb.Payloads{Payloads: []*commonpb.Payload{{Data: secret}}}}}}}}
	b, err := protojson.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), string(secret)) {
		t.Fatal("the JSON already shows the payload: the test proves nothing")
	}
	if got := HistoryText(string(b)); !strings.Contains(got, string(secret)) {
		t.Fatalf("HistoryText does not show the payload's data:\n%s", got)
	}
	if got := HistoryText(`{"not":"a history"}`); got != `{"not":"a history"}` {
		t.Fatalf("other JSON changed: %q", got)
	}
}
