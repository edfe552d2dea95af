-- Mixed traffic for gridmap under wrk (used by benchmarks/bench_load.py and tests/test_load.py).
-- Per thread, requests cycle through: GET /api/v1/score (one site, a different longitude each
-- time), GET /api/v1/regions/<id> (a real state code), GET /api/v1/score again, and POST
-- /api/v1/score with five sites as CSV. So half the requests are GET /score, a quarter regions,
-- a quarter POST.
local regions = {"TX", "VA", "CA", "OR", "NY", "GA", "AZ", "OH", "WA", "IL"}
local sites = "site_id,lon,lat,it_load_mw\n" ..
  "a,-99,31,100\nb,-77.5,39,50\nc,-120,38,80\nd,-84,34,30\ne,-112,33.5,60\n"
local n = 0

request = function()
  n = n + 1
  local kind = n % 4
  if kind == 0 then
    return wrk.format("POST", "/api/v1/score", {["Content-Type"] = "text/csv"}, sites)
  elseif kind == 1 then
    return wrk.format("GET", "/api/v1/regions/" .. regions[(n % #regions) + 1])
  end
  return wrk.format("GET", string.format("/api/v1/score?lon=%.2f&lat=38.5&it_load_mw=100", -120 + (n % 400) * 0.1))
end
