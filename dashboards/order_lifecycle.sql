-- The order lifecycle around an alert: every order event of the alert's owners in its instrument, 5 minutes either side.
-- params: alert_id
WITH a AS (SELECT * FROM alerts WHERE alert_id = $alert_id)
SELECT o.ts, o.venue, o.platform, o.account, o.owner, o.order_id, o.side, o.action, o.price, o.qty, o.leaves_qty, o.trade_id
FROM orders o, a
WHERE o.instrument = a.instrument AND list_contains(a.owners, o.owner)
  AND o.ts BETWEEN a.window_start - INTERVAL 5 MINUTE AND a.window_end + INTERVAL 5 MINUTE
ORDER BY o.order_id, o.ts
