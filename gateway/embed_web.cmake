# Writes web_page.cpp (OUT) from web_page.cpp.in (IN) with the bundled chat app's three files
# (WEB_DIR/index.html, app.js, app.css) as raw string literals. Run at build time by
# gateway/CMakeLists.txt, after web/ is bundled:
#   cmake -DWEB_DIR=... -DIN=... -DOUT=... -P embed_web.cmake
foreach(web_file IN ITEMS index.html app.js app.css)
  string(MAKE_C_IDENTIFIER ${web_file} web_var)
  string(TOUPPER ${web_var} web_var)
  file(READ ${WEB_DIR}/${web_file} IMLOG_WEB_${web_var})
  string(FIND "${IMLOG_WEB_${web_var}}" ")imlogweb\"" web_delimiter_at)
  if(NOT web_delimiter_at EQUAL -1)
    message(FATAL_ERROR "${WEB_DIR}/${web_file} holds )imlogweb\", the end of the raw string it is compiled into")
  endif()
endforeach()
configure_file(${IN} ${OUT} @ONLY)
