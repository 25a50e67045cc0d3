-- Every alert naming any owner of a linked owner group (groups from the reference data of the latest run).
-- params: group
SELECT a.alert_id, a.detector, a.severity, a.instrument, a.window_start, a.owners, a.summary
FROM alerts a
WHERE len(list_intersect(a.owners, (SELECT list(owner_id) FROM ref_owner_links WHERE group_id = $group))) > 0
   OR list_contains(a.owners, $group)
ORDER BY a.window_start
