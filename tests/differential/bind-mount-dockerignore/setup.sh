echo secret > token && echo visible > visible.txt && mkdir -p logs && echo l > logs/a.log
printf 'token\nlogs\n' > .dockerignore
