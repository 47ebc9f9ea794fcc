-- wrk script: POST /v1/batch with PER_REQUEST (default 20) valid `feature_toggled` messages.
-- Usage: wrk -s scripts/bench/batch.lua URL -- RUN_ID 20
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.path = "/v1/batch"
wrk.headers["Content-Type"] = "application/json"

function request()
  local items = {}
  for i = 1, per_request do
    items[i] = next_message()
  end
  return wrk.format(nil, nil, nil, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
