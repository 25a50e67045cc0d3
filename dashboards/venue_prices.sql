-- Price path of the alert's instrument on every venue around the alert (per second: last, high, low, volume), 10 minutes either side.
-- params: alert_id
WITH a AS (SELECT * FROM alerts WHERE alert_id = $alert_id)
SELECT time_bucket(INTERVAL 1 SECOND, t.ts) AS second, t.venue,
       arg_max(t.price, t.ts) AS last, max(t.price) AS high, min(t.price) AS low, sum(t.qty) AS volume, count(*) AS trades
FROM trades t, a
WHERE t.instrument = a.instrument
  AND t.ts BETWEEN a.window_start - INTERVAL 10 MINUTE AND a.window_end + INTERVAL 10 MINUTE
GROUP BY ALL
ORDER BY second, venue
