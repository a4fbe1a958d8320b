package mapping

// Reason says why a source row was not written as-is. Reasons are stable
// strings: they appear in the run report, in metrics and in counts.
type Reason string

// Reasons a row is skipped by design: the reference tool skips them too.
const (
	// ReasonAppservice: users registered by an application service stay in Synapse.
	ReasonAppservice Reason = "appservice_user"
	// ReasonOwnerAppservice: every dependent row of an appservice user.
	ReasonOwnerAppservice Reason = "owner_is_appservice"
	// ReasonOwnerGuest: guests keep no devices or tokens.
	ReasonOwnerGuest Reason = "owner_is_guest"
	// ReasonOwnerDeactivated: deactivated users keep no devices or tokens.
	ReasonOwnerDeactivated Reason = "owner_is_deactivated"
	// ReasonPuppet: admin "login as user" tokens are never migrated.
	ReasonPuppet Reason = "puppet_token"
	// ReasonHiddenDevice: hidden devices are cross-signing keys, not devices.
	ReasonHiddenDevice Reason = "hidden_device"
	// ReasonGuestDevice: the placeholder device of guest accounts.
	ReasonGuestDevice Reason = "guest_device"
	// ReasonDeviceMissing: the token's device no longer exists.
	ReasonDeviceMissing Reason = "device_missing"
	// ReasonRefreshable: the access token is migrated with its refresh token
	// by the refresh_pairs entity, not by access_tokens.
	ReasonRefreshable Reason = "migrated_with_refresh_token"
	// ReasonUnpairedRefreshable: an access token issued with a refresh
	// token whose pair is another access token (a lower id, or the
	// refresh token's own user and device): only one is written with it.
	ReasonUnpairedRefreshable Reason = "unpaired_refreshable_token"
	// ReasonNoAccessToken: a refresh token no access token was issued with.
	ReasonNoAccessToken Reason = "refresh_token_without_access_token"
	// ReasonSuccessorUsed: the client already rotated to the next pair.
	ReasonSuccessorUsed Reason = "refresh_successor_used"
)

// Reasons a row is bad: the reference aborts the whole run on them; we skip
// and report by default, and abort in strict mode.
const (
	// ReasonInvalidMXID: the user ID is not @localpart:server.
	ReasonInvalidMXID Reason = "invalid_mxid"
	// ReasonForeignServer: the MXID's server part is not this homeserver.
	ReasonForeignServer Reason = "foreign_server"
	// ReasonOwnerMissing: no user (or several, case-insensitively) matches.
	ReasonOwnerMissing Reason = "owner_missing"
	// ReasonOwnerCaseMismatch: a device, token or SSO link names its user
	// with other letter case than users.name. Attached to that user, a
	// client of @eve would be served as @Eve and an SSO subject could
	// reach another account, so the row is not written.
	ReasonOwnerCaseMismatch Reason = "owner_case_mismatch"
	// ReasonTokenOnHiddenDevice: a token of a hidden device has no session
	// to belong to (the reference writes it anyway and fails at the end).
	ReasonTokenOnHiddenDevice Reason = "token_on_hidden_device"
	// ReasonTokenOnGuestDevice: likewise for the guest_device placeholder.
	ReasonTokenOnGuestDevice Reason = "token_on_guest_device"
)

// ReasonUnmappedProvider: an SSO link whose provider has no MAS provider
// with a matching synapse_idp_id. Without the operator's explicit choice to
// ignore missing providers this aborts the import (in any mode); with it,
// the link is skipped even in strict mode.
const ReasonUnmappedProvider Reason = "unmapped_provider"

// Notices: the row was written, with a fallback worth reporting.
const (
	// NoticeCaseMismatch: a threepid's MXID matched its user only
	// case-insensitively; it is written for that user.
	NoticeCaseMismatch Reason = "case_mismatch_resolved"
	// NoticeNullCreationTS: users.creation_ts was NULL; the run's "now" was used.
	NoticeNullCreationTS Reason = "null_creation_ts"
	// NoticeBadIP: devices.ip was not an IP address; stored as NULL.
	NoticeBadIP Reason = "unparsable_ip"
	// NoticeEmptyPasswordHash: an empty hash can never verify, so no
	// password row is written; the user sets one through MAS recovery.
	NoticeEmptyPasswordHash Reason = "empty_password_hash"
)

// Bad reports whether the reason marks an inconsistent source row (as
// opposed to a row skipped by design).
func (r Reason) Bad() bool {
	switch r {
	case ReasonInvalidMXID, ReasonForeignServer, ReasonOwnerMissing, ReasonOwnerCaseMismatch,
		ReasonTokenOnHiddenDevice, ReasonTokenOnGuestDevice:
		return true
	}
	return false
}

// Elsewhere reports whether a reason counts rows that are not skipped but
// migrated by another entity's pass (a refreshable access token is
// written with its refresh token): they are neither written nor skipped
// by the entity that read them.
func Elsewhere(reason string) bool { return reason == string(ReasonRefreshable) }
