-- An owner's activity across both platforms in a time window: every order event and trade of any of its accounts.
-- params: owner, start, end
SELECT 'order' AS kind, ts, venue, instrument, platform, account, side, action, price, qty, order_id, trade_id
FROM orders
WHERE owner = $owner AND ts >= CAST($start AS TIMESTAMPTZ) AND ts < CAST($end AS TIMESTAMPTZ)
UNION ALL
SELECT 'trade', ts, venue, instrument,
       CASE WHEN buy_owner = $owner THEN buy_platform ELSE sell_platform END,
       CASE WHEN buy_owner = $owner THEN buy_account ELSE sell_account END,
       CASE WHEN buy_owner = $owner AND sell_owner = $owner THEN 'both' WHEN buy_owner = $owner THEN 'buy' ELSE 'sell' END,
       NULL, price, qty, NULL, trade_id
FROM trades
WHERE (buy_owner = $owner OR sell_owner = $owner) AND ts >= CAST($start AS TIMESTAMPTZ) AND ts < CAST($end AS TIMESTAMPTZ)
ORDER BY ts
