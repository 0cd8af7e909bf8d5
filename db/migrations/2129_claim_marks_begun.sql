-- claim_messages takes p_begin (how many of its device groups the sender begins at once, marked as
-- begun by the claim itself: no round trip before an idle sender's first send).
-- depends: 2128_sender_begun_mark
DROP FUNCTION IF EXISTS claim_messages(text, integer, integer);
