-- wrk script: POST /v1/batch with 4 people per request, 5 messages each: a page view by
-- anonymousId, an identify (userId, email, plan_tier; every tenth person after the first 2,000
-- reuses an earlier userId, so profiles merge), a group call (one of 500 accounts), a track by
-- userId and a track by anonymousId. Usage: wrk -s scripts/bench/mixed.lua URL (arguments after
-- `--` are ignored; message ids start with "mixed<unix time>-", unique per run).
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.path = "/v1/batch"
wrk.headers["Content-Type"] = "application/json"

local person = 0
local sent = 0
local run = "mixed" .. tostring(os.time())

local function message_id()
  sent = sent + 1
  return run .. "-" .. tostring(thread_no) .. "-" .. tostring(sent)
end

local function person_messages()
  person = person + 1
  local p = tostring(thread_no) .. "-" .. tostring(person)
  local uid = "u-" .. p
  if person % 10 == 0 and person > 2000 then
    uid = "u-" .. tostring(thread_no) .. "-" .. tostring(person - 1500)
  end
  local group = "g-" .. tostring(person % 500)
  return {
    '{"type":"page","name":"Pricing","anonymousId":"a-' .. p .. '","messageId":"' .. message_id() ..
      '","properties":{"path":"/pricing"}}',
    '{"type":"identify","anonymousId":"a-' .. p .. '","userId":"' .. uid .. '","messageId":"' ..
      message_id() .. '","traits":{"email":"' .. uid .. '@example.com","plan_tier":"free"}}',
    '{"type":"group","userId":"' .. uid .. '","groupId":"' .. group .. '","messageId":"' ..
      message_id() .. '","traits":{"seats_provisioned":5}}',
    '{"type":"track","event":"feature_toggled","userId":"' .. uid .. '","messageId":"' ..
      message_id() .. '","properties":{"feature_name":"dark_mode","new_status":true}}',
    '{"type":"track","event":"feature_toggled","anonymousId":"a-' .. p .. '","messageId":"' ..
      message_id() .. '","properties":{"feature_name":"beta","new_status":false}}',
  }
end

function request()
  local items = {}
  for _ = 1, 4 do
    for _, m in ipairs(person_messages()) do
      items[#items + 1] = m
    end
  end
  return wrk.format(nil, nil, nil, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
