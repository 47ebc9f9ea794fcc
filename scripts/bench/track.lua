-- wrk script: POST /v1/track, one planned, valid `feature_toggled` message per request.
-- Usage: wrk -s scripts/bench/track.lua URL -- RUN_ID
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.path = "/v1/track"
wrk.headers["Content-Type"] = "application/json"

function request()
  return wrk.format(nil, nil, nil, next_message())
end
