/* Start-up cost of LD_PRELOAD: posix_spawn(/bin/true) N times per variant, variants taking
 * turns, median per variant. Used by scripts/startup-cost.sh.
 *   spawn-true N none|LIB [LIB...] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
extern char **environ;
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){int n=atoi(argv[1]);int v=argc-2;double*ts=malloc(sizeof(double)*n*v);
 char*args[]={"/bin/true",NULL};
 for(int i=0;i<n;i++)for(int k=0;k<v;k++){char e[512];snprintf(e,512,"LD_PRELOAD=%s",argv[2+k]);char*env[]={e,NULL};
  double t0=now();pid_t p;posix_spawn(&p,"/bin/true",NULL,NULL,args,strcmp(argv[2+k],"none")?env:(char*[]){NULL});int st;waitpid(p,&st,0);ts[k*n+i]=now()-t0;}
 for(int k=0;k<v;k++){qsort(ts+k*n,n,sizeof(double),cmp);printf("%-60s median %.1f us\n",argv[2+k],ts[k*n+n/2]);}}
