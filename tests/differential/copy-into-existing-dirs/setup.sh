printf '#!/bin/sh\n' > tool && chmod 755 tool && mkdir -p conf/app && echo c > conf/app/app.conf
