-- A journal written by the agent at schema 0003 (before the seals and the linked command chain), dumped
-- with sqlite3's iterdump: commands with recoveries, deliveries, replies removed and one pruned, a consumed
-- and an open key exchange (a made-up secret), releases. tests/journal/test_migrations.py loads it.
BEGIN TRANSACTION;
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO "alembic_version" VALUES('0003');
CREATE TABLE commands (
	id INTEGER NOT NULL, 
	request_id VARCHAR(256) NOT NULL, 
	domain_path VARCHAR(256) NOT NULL, 
	name VARCHAR(128), 
	machine VARCHAR(64) NOT NULL, 
	value TEXT, 
	digest VARCHAR(64) NOT NULL, 
	state VARCHAR(64) NOT NULL, 
	attempts INTEGER NOT NULL, 
	received_at VARCHAR(32) NOT NULL, 
	updated_at VARCHAR(32) NOT NULL, 
	finished_at VARCHAR(32), 
	reply_code VARCHAR(16), 
	reply_message TEXT, 
	replied_at VARCHAR(32), 
	reply_removed_at VARCHAR(32), 
	last_seq INTEGER NOT NULL, 
	last_hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "commands" VALUES(2,'bbbb-2','/local/domain/5','version','version','"agent"','bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','done',1,'2026-11-20T10:00:03.000000Z','2026-11-20T10:00:05.000000Z','2026-11-20T10:00:04.000000Z','0','1.0','2026-11-20T10:00:05.000000Z','2026-11-20T10:00:26.000000Z',3,'5d8866e9fc8106b3ef0a083e23c93ec0d3eab12554b2e2cebbe6de6a754e6220');
INSERT INTO "commands" VALUES(3,'kkkk-3','/local/domain/5','keyinit','keyinit','"123"','kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk','done',1,'2026-11-20T10:00:06.000000Z','2026-11-20T10:00:09.000000Z','2026-11-20T10:00:08.000000Z','D0','99','2026-11-20T10:00:09.000000Z',NULL,4,'03aa3db97c2af60a0a0f03b5da0de5974a410bdf3cd5b02008e34c3820dd702b');
INSERT INTO "commands" VALUES(4,'pppp-4','/local/domain/5','password','password',NULL,'pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp','done',2,'2026-11-20T10:00:10.000000Z','2026-11-20T10:00:15.000000Z','2026-11-20T10:00:14.000000Z','0','','2026-11-20T10:00:15.000000Z',NULL,6,'675db5135881d93d3b08cbc4c850736115e00e53553ed42ea02d17a7bdf2e888');
INSERT INTO "commands" VALUES(5,'kkkk-5','/local/domain/5','keyinit','keyinit','"124"','qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq','done',1,'2026-11-20T10:00:16.000000Z','2026-11-20T10:00:19.000000Z','2026-11-20T10:00:18.000000Z','D0','98','2026-11-20T10:00:19.000000Z',NULL,4,'92894ee2a5bdb2fa438aec4ad4226d6e6475e49efba5cf9d1b12de0e8754ee54');
INSERT INTO "commands" VALUES(6,'rrrr-6','/local/domain/5',NULL,'rejected',NULL,'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr','failed',1,'2026-11-20T10:00:20.000000Z','2026-11-20T10:00:21.000000Z','2026-11-20T10:00:21.000000Z','500','Request is malformed',NULL,NULL,2,'a96626cb4e6f5df519430f2dfa740e9d76092430e175a84619683579814517e4');
INSERT INTO "commands" VALUES(7,'uuuu-7','/local/domain/5','agentupdate','agentupdate','"x"','uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu','downloading',1,'2026-11-20T10:00:22.000000Z','2026-11-20T10:00:23.000000Z',NULL,NULL,NULL,NULL,NULL,2,'6feab66dd5f1fa07525228cbee00fbe75b1cc2f0d17bdd0325f9724c09540c4e');
INSERT INTO "commands" VALUES(8,'vvvv-8','/local/domain/5','version','version','"agent"','vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv','done',1,'2026-11-20T10:00:27.000000Z','2026-11-20T10:00:29.000000Z','2026-11-20T10:00:28.000000Z','0','1.0','2026-11-20T10:00:29.000000Z',NULL,3,'aa64aa5932f3216ea3b0172018275598fef9a438aaf1fefc94971a72bed39db2');
CREATE TABLE exchanges (
	id INTEGER NOT NULL, 
	command_id INTEGER NOT NULL, 
	opened_at VARCHAR(32) NOT NULL, 
	expires_at VARCHAR(32) NOT NULL, 
	public_key VARCHAR(64) NOT NULL, 
	group_bits INTEGER NOT NULL, 
	secret TEXT, 
	state VARCHAR(16) NOT NULL, 
	closed_at VARCHAR(32), 
	applied_digest VARCHAR(64), 
	derivation VARCHAR(16), 
	applied_by INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(command_id) REFERENCES commands (id) ON DELETE CASCADE
);
INSERT INTO "exchanges" VALUES(1,3,'2026-11-20T10:00:07.000000Z','2026-11-20T11:00:00.000000Z','99',107,NULL,'consumed','2026-11-20T10:00:13.000000Z','cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc','sha256',4);
INSERT INTO "exchanges" VALUES(2,5,'2026-11-20T10:00:17.000000Z','2026-11-20T11:30:00.000000Z','98',107,'4343','open',NULL,NULL,NULL,NULL);
CREATE TABLE releases (
	version VARCHAR(64) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	reason TEXT, 
	marked_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "releases" VALUES('1.0.0','good','installed','2026-11-20T10:00:24.000000Z');
INSERT INTO "releases" VALUES('1.1.0','bad','crashed','2026-11-20T10:00:25.000000Z');
CREATE TABLE transitions (
	id INTEGER NOT NULL, 
	command_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	"trigger" VARCHAR(64) NOT NULL, 
	source VARCHAR(64), 
	dest VARCHAR(64) NOT NULL, 
	at VARCHAR(32) NOT NULL, 
	detail TEXT NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(command_id) REFERENCES commands (id) ON DELETE CASCADE
);
INSERT INTO "transitions" VALUES(4,2,1,'receive',NULL,'received','2026-11-20T10:00:03.000000Z','{"digest":"bbbb"}','d1b5781dc3783caede6ace16709c9ea504419d643b44a427b598543a7552616e','c129d981189a8f87350ad003105f40fafcdeb41ec1216851348374cf05bfccf7');
INSERT INTO "transitions" VALUES(5,2,2,'answer','received','done','2026-11-20T10:00:04.000000Z','{"reply":{"message":"1.0","returncode":"0"}}','c129d981189a8f87350ad003105f40fafcdeb41ec1216851348374cf05bfccf7','39188cc805da803edcb1764872d5a393610bdcafeaf09218f48fd7bedfb13edf');
INSERT INTO "transitions" VALUES(6,2,3,'deliver','done','done','2026-11-20T10:00:05.000000Z','{}','39188cc805da803edcb1764872d5a393610bdcafeaf09218f48fd7bedfb13edf','5d8866e9fc8106b3ef0a083e23c93ec0d3eab12554b2e2cebbe6de6a754e6220');
INSERT INTO "transitions" VALUES(7,3,1,'receive',NULL,'received','2026-11-20T10:00:06.000000Z','{}','81ffaf68c836960e106b751e107e282705279c520cea61a0d095641183bd500d','1a3ddf188cd147adf0949f8cb015d1be01633fa6e4c287bcf2de29a5ad7f6c74');
INSERT INTO "transitions" VALUES(8,3,2,'exchange','received','exchanged','2026-11-20T10:00:07.000000Z','{"public_key":"99"}','1a3ddf188cd147adf0949f8cb015d1be01633fa6e4c287bcf2de29a5ad7f6c74','e04c60d17f8ee0c82a64768b42fefd4738b90e3becccd007ba80c976ce22421e');
INSERT INTO "transitions" VALUES(9,3,3,'answer','exchanged','done','2026-11-20T10:00:08.000000Z','{"reply":{"message":"99","returncode":"D0"}}','e04c60d17f8ee0c82a64768b42fefd4738b90e3becccd007ba80c976ce22421e','f2e1b686ab382a584fdb1ac7e7f2ebca5fded1b5120f9d1c116f9259eba3d81d');
INSERT INTO "transitions" VALUES(10,3,4,'deliver','done','done','2026-11-20T10:00:09.000000Z','{}','f2e1b686ab382a584fdb1ac7e7f2ebca5fded1b5120f9d1c116f9259eba3d81d','03aa3db97c2af60a0a0f03b5da0de5974a410bdf3cd5b02008e34c3820dd702b');
INSERT INTO "transitions" VALUES(11,4,1,'receive',NULL,'received','2026-11-20T10:00:10.000000Z','{}','57886b24e1dba252a48026d0a71a7bf47fabb36688e838b379cab9477ff83fb7','add01fdbdd433001d01254325c583374dc30710bdb3d2dc96ab8bf39a7a1e3a4');
INSERT INTO "transitions" VALUES(12,4,2,'recover','received','received','2026-11-20T10:00:11.000000Z','{"attempt":2}','add01fdbdd433001d01254325c583374dc30710bdb3d2dc96ab8bf39a7a1e3a4','875f7542b8ea81e74bf31ef83652d3a23b3da6c3b77f753e074fb9c19cfd25b4');
INSERT INTO "transitions" VALUES(13,4,3,'unlock','received','applying','2026-11-20T10:00:12.000000Z','{"exchange":1}','875f7542b8ea81e74bf31ef83652d3a23b3da6c3b77f753e074fb9c19cfd25b4','86211d1cbe3729fa5bf2281878094ff2bacdd61d60aa06720e3a0a0d699e3f5a');
INSERT INTO "transitions" VALUES(14,4,4,'apply','applying','applied','2026-11-20T10:00:13.000000Z','{}','86211d1cbe3729fa5bf2281878094ff2bacdd61d60aa06720e3a0a0d699e3f5a','5cbbe86ea786ceff119d55370d686723d47c1ae79828d19ee461ab132e57a053');
INSERT INTO "transitions" VALUES(15,4,5,'answer','applied','done','2026-11-20T10:00:14.000000Z','{"reply":{"message":"","returncode":"0"}}','5cbbe86ea786ceff119d55370d686723d47c1ae79828d19ee461ab132e57a053','abe28c276ef79da4ae81ac1d35d9f2a19fd7e44ceb2aac2fc27731c569795d0f');
INSERT INTO "transitions" VALUES(16,4,6,'deliver','done','done','2026-11-20T10:00:15.000000Z','{}','abe28c276ef79da4ae81ac1d35d9f2a19fd7e44ceb2aac2fc27731c569795d0f','675db5135881d93d3b08cbc4c850736115e00e53553ed42ea02d17a7bdf2e888');
INSERT INTO "transitions" VALUES(17,5,1,'receive',NULL,'received','2026-11-20T10:00:16.000000Z','{}','584f05d70770912e00becc19af7faa4fdeff4423a9c7c815ca5ac8037bd91a08','feb109446e9140d55bde89eda5d6c0d08a6b6bd79b8f4305542102316f278df5');
INSERT INTO "transitions" VALUES(18,5,2,'exchange','received','exchanged','2026-11-20T10:00:17.000000Z','{"public_key":"98"}','feb109446e9140d55bde89eda5d6c0d08a6b6bd79b8f4305542102316f278df5','3f6e7b348239abe205a728a1eaab30d1fdc7d7fe9421b4fdf877c879a3114978');
INSERT INTO "transitions" VALUES(19,5,3,'answer','exchanged','done','2026-11-20T10:00:18.000000Z','{"reply":{"message":"98","returncode":"D0"}}','3f6e7b348239abe205a728a1eaab30d1fdc7d7fe9421b4fdf877c879a3114978','14eec455151c316951743e3b596dbdd3a03364a0d8f4649077a0454dabb88f7c');
INSERT INTO "transitions" VALUES(20,5,4,'deliver','done','done','2026-11-20T10:00:19.000000Z','{}','14eec455151c316951743e3b596dbdd3a03364a0d8f4649077a0454dabb88f7c','92894ee2a5bdb2fa438aec4ad4226d6e6475e49efba5cf9d1b12de0e8754ee54');
INSERT INTO "transitions" VALUES(21,6,1,'receive',NULL,'received','2026-11-20T10:00:20.000000Z','{"rejected":"500"}','5430ceae8a3bed5541d0befb0fd5b334abeb8d90aef050c83050f0f2c49c9535','4b4cc55b6af4000bf7f7707f3cf946631d1a55fb32c56fe93a1b185aaa5519a2');
INSERT INTO "transitions" VALUES(22,6,2,'fail','received','failed','2026-11-20T10:00:21.000000Z','{"error":"RequestRejected","reply":{"message":"Request is malformed","returncode":"500"}}','4b4cc55b6af4000bf7f7707f3cf946631d1a55fb32c56fe93a1b185aaa5519a2','a96626cb4e6f5df519430f2dfa740e9d76092430e175a84619683579814517e4');
INSERT INTO "transitions" VALUES(23,7,1,'receive',NULL,'received','2026-11-20T10:00:22.000000Z','{}','5cd83ffeda91c5317dc8b11a85651eeef79a1676ac0a8cda56bfed31b3677a3b','6f77366ecb4ced36242933a944992114235878ccddd186e53ffb01e0351e807f');
INSERT INTO "transitions" VALUES(24,7,2,'download','received','downloading','2026-11-20T10:00:23.000000Z','{"url":"http://x"}','6f77366ecb4ced36242933a944992114235878ccddd186e53ffb01e0351e807f','6feab66dd5f1fa07525228cbee00fbe75b1cc2f0d17bdd0325f9724c09540c4e');
INSERT INTO "transitions" VALUES(25,8,1,'receive',NULL,'received','2026-11-20T10:00:27.000000Z','{"digest":"vvvv"}','144796c52aab529a34b1467ed9f570115b0153280df1b27e9e7d1677df539e17','2841d22904430f6969361830562fba27d7703708ed6afa679f4bc7b23af7e2fd');
INSERT INTO "transitions" VALUES(26,8,2,'answer','received','done','2026-11-20T10:00:28.000000Z','{"reply":{"message":"1.0","returncode":"0"}}','2841d22904430f6969361830562fba27d7703708ed6afa679f4bc7b23af7e2fd','b90ed5ac3c070091d52e739a506a43103d904d5d2e17cc19e5336de5b382073b');
INSERT INTO "transitions" VALUES(27,8,3,'deliver','done','done','2026-11-20T10:00:29.000000Z','{}','b90ed5ac3c070091d52e739a506a43103d904d5d2e17cc19e5336de5b382073b','aa64aa5932f3216ea3b0172018275598fef9a438aaf1fefc94971a72bed39db2');
CREATE INDEX ix_commands_request_id ON commands (request_id);
CREATE UNIQUE INDEX ix_transitions_command_seq ON transitions (command_id, seq);
CREATE INDEX ix_exchanges_state ON exchanges (state);
COMMIT;
