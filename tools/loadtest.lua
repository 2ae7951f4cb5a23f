-- wrk script of `make loadtest` (tools/loadtest.py): POSTs the JSON body in LOADTEST_BODY to the
-- URL's route, counts the responses by status in every thread, and ends with machine-readable
-- lines ("loadtest key value") that the Python side parses instead of wrk's human summary.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("LOADTEST_BODY")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    io.write(string.format("loadtest status_%d %d\n", status, count))
  end
  local errors = summary.errors
  io.write(string.format("loadtest requests %d\n", summary.requests))
  io.write(string.format("loadtest duration_us %d\n", summary.duration))
  io.write(string.format("loadtest connect_errors %d\n", errors.connect))
  io.write(string.format("loadtest read_errors %d\n", errors.read))
  io.write(string.format("loadtest write_errors %d\n", errors.write))
  io.write(string.format("loadtest timeouts %d\n", errors.timeout))
  io.write(string.format("loadtest p50_us %d\n", latency:percentile(50)))
  io.write(string.format("loadtest p99_us %d\n", latency:percentile(99)))
  io.write(string.format("loadtest max_us %d\n", latency.max))
end
