std = "lua54"
max_line_length = 130
files["spec/**/*.lua"] = { std = "+busted" }
files["bench/**/*.lua"] = { std = "lua54" }
exclude_files = { "build/**", "lua_modules/**" }
files["lua/pipedrive/sandbox/routes_gen.lua"] = { max_line_length = false } -- generated data
