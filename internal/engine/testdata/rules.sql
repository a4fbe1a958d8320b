-- One Synapse row per rule of docs/mapping.md; engine_test.go asserts the
-- exact MAS rows each becomes. Server name: example.org.
INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, locked, appservice_id) VALUES
  ('@alice:example.org',   '$2b$12$alicehash', 1600000000, 1, 0, 0, false, NULL),  -- regular admin
  ('@bob:example.org',      NULL,              1600000100, 0, 0, 0, true,  NULL),  -- locked, no password
  ('@guest1:example.org',  '$2b$12$guesthash', 1600000200, 0, 1, 0, false, NULL),  -- guest
  ('@carol:example.org',   '$2b$12$carolhash', 1600000300, 0, 0, 1, false, NULL),  -- deactivated
  ('@bridge_x:example.org', NULL,              1600000400, 0, 0, 0, false, 'irc'), -- appservice
  ('@irc_a:b:example.org',  NULL,              1600000450, 0, 0, 0, false, 'irc'), -- appservice, colon in localpart
  ('@dave:other.org',      '$2b$12$davehash',  1600000500, 0, 0, 0, false, NULL),  -- foreign server
  ('@nullts:example.org',  '$2b$12$nullhash',  NULL,       0, 0, 0, false, NULL),  -- NULL creation_ts
  ('@Eve:example.org',     '$2b$12$evehash',   1600000600, 0, 0, 0, false, NULL),  -- dependants use @eve
  ('@empty:example.org',   '',                 1600000700, 0, 0, 0, false, NULL),  -- empty hash
  ('bogus',                '$2b$12$boguhash',  1600000800, 0, 0, 0, false, NULL);  -- not an MXID

INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES
  ('@alice:example.org',    'email',  'alice@example.org',  1600000000500, 1600000000500),
  ('@alice:example.org',    'msisdn', '447700900000',       1600000000600, 1600000000600),
  ('@guest1:example.org',   'email',  'guest@example.org',  1600000200500, 1600000200500),
  ('@carol:example.org',    'email',  'carol@example.org',  1600000300500, 1600000300500),
  ('@bridge_x:example.org', 'email',  'bridge@example.org', 1600000400500, 1600000400500),
  ('@eve:example.org',      'email',  'eve@example.org',    1600000600500, 1600000600500),
  ('@ghost:example.org',    'email',  'ghost@example.org',  1600000900500, 1600000900500),
  ('@zed:remote.org',       'email',  'zed@remote.org',     1600000950500, 1600000950500);

INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES
  ('oidc-google', 'sub-alice', '@alice:example.org'),
  ('oidc',        'sub-carol', '@carol:example.org'),
  ('saml',        'sub-bob',   '@bob:example.org'),       -- no MAS provider
  ('oidc',        'sub-guest', '@guest1:example.org'),
  ('oidc',        'sub-x',     '@bridge_x:example.org'),
  ('oidc',        'sub-eve',   '@eve:example.org');        -- user is @Eve: not attached

INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden) VALUES
  ('@alice:example.org',    'ADEV1',        'Alice phone', 1700000000000, '1.2.3.4',          'Element', false),
  ('@alice:example.org',    'ADEV2',        NULL,          NULL,          '-',                NULL,      NULL),
  ('@alice:example.org',    'ADEV3',        'Alice web',   1710000005000, '::ffff:10.0.0.1',  'Firefox', false),
  ('@alice:example.org',    'AHIDDEN',      NULL,          NULL,          NULL,               NULL,      true),
  ('@alice:example.org',    'guest_device', NULL,          NULL,          NULL,               NULL,      false),
  ('@bob:example.org',      'BDEV1',        'Bob laptop',  1700000100000, 'garbage',          'curl',    false),
  ('@guest1:example.org',   'GDEV',         NULL,          NULL,          NULL,               NULL,      false),
  ('@carol:example.org',    'CDEV',         NULL,          NULL,          NULL,               NULL,      false),
  ('@bridge_x:example.org', 'XDEV',         NULL,          NULL,          NULL,               NULL,      false),
  ('@irc_a:b:example.org',  'IDEV',         NULL,          NULL,          NULL,               NULL,      false),
  ('@eve:example.org',      'EDEV',         'Eve tablet',  1700000600000, '2001:db8::1',      'Element', false);

INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id) VALUES
  (101, '@alice:example.org', 'ADEV3', 'syr_alice_101', NULL),
  (100, '@alice:example.org', 'ADEV3', 'syr_alice_100', 101),  -- successor unused: kept
  (103, '@alice:example.org', 'ADEV3', 'syr_alice_103', NULL),
  (102, '@alice:example.org', 'ADEV3', 'syr_alice_102', 103),  -- successor used: dropped
  (104, '@alice:example.org', 'ADEV3', 'syr_alice_104', NULL); -- no access token

INSERT INTO access_tokens (id, user_id, device_id, token, valid_until_ms, puppets_user_id, last_validated, refresh_token_id, used) VALUES
  (1,  '@alice:example.org',    'ADEV1',        'syt_alice_1',  NULL,          NULL,                 1700000000100, NULL, NULL),
  (2,  '@alice:example.org',    'ADEV1',        'syt_alice_2',  NULL,          NULL,                 1690000000000, NULL, NULL),
  (3,  '@alice:example.org',    'ADEV1',        'syt_puppet_3', NULL,          '@admin:example.org', 1680000000000, NULL, NULL),
  (4,  '@alice:example.org',    NULL,           'syt_alice_4',  1800000000000, NULL,                 1650000000000, NULL, NULL),
  (5,  '@alice:example.org',    'VANISHED',     'syt_alice_5',  NULL,          NULL,                 1650000000001, NULL, NULL),
  (6,  '@alice:example.org',    'AHIDDEN',      'syt_alice_6',  NULL,          NULL,                 1650000000002, NULL, NULL),
  (7,  '@alice:example.org',    'guest_device', 'syt_alice_7',  NULL,          NULL,                 1650000000003, NULL, NULL),
  (8,  '@guest1:example.org',   'GDEV',         'syt_guest_8',  NULL,          NULL,                 1650000000004, NULL, NULL),
  (9,  '@carol:example.org',    'CDEV',         'syt_carol_9',  NULL,          NULL,                 1650000000005, NULL, NULL),
  (10, '@bob:example.org',      'BDEV1',        'syt_bob_10',   NULL,          NULL,                 NULL,          NULL, NULL),
  (11, '@alice:example.org',    'ADEV3',        'syt_alice_11', 1710000300000, NULL,                 1710000000000, 100,  false),
  (12, '@alice:example.org',    'ADEV3',        'syt_alice_12', 1710000301000, NULL,                 1710000001000, 101,  false),
  (13, '@alice:example.org',    'ADEV3',        'syt_alice_13', 1705000300000, NULL,                 1705000000000, 102,  true),
  (14, '@alice:example.org',    'ADEV3',        'syt_alice_14', 1710000302000, NULL,                 1710000002000, 103,  true),
  (15, '@eve:example.org',      'EDEV',         'syt_eve_15',   NULL,          NULL,                 1700000600100, NULL, NULL),
  (16, '@bridge_x:example.org', 'XDEV',         'syt_bridge_16',NULL,          NULL,                 1650000000006, NULL, NULL),
  (17, '@alice:example.org',    'ADEV3',        'syt_alice_17', NULL,          NULL,                 1710000009000, 101,  false); -- 101's second token
