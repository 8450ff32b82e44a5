#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
int main(int argc,char**argv){
  int mode=atoi(argv[1]); int n=atoi(argv[2]); int size=atoi(argv[3]);
  int fd=open("/work/fs-probe.dat",O_RDWR|O_CREAT,0644);
  if(mode>=10){ /* preallocate by writing */ char*z=calloc(1,1<<20); for(int i=0;i<64;i++) pwrite(fd,z,1<<20,(off_t)i<<20); fdatasync(fd); mode-=10;}
  char*buf=malloc(size); memset(buf,'x',size);
  double *lat=malloc(sizeof(double)*n);
  off_t off=0;
  for(int i=0;i<n;i++){
    double t=now();
    pwrite(fd,buf,size,off);
    if(mode==0){ sync_file_range(fd,off,size,SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER); fdatasync(fd);} 
    else if(mode==1){ fdatasync(fd);} 
    else if(mode==2){ sync_file_range(fd,off,size,SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER);} 
    lat[i]=now()-t; off+=size; if(off>=(60<<20)) off=0;
  }
  int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
  qsort(lat,n,sizeof(double),cmp);
  printf("mode %d size %d: p50 %.3f p90 %.3f p99 %.3f ms\n",mode,size,lat[n/2],lat[n*9/10],lat[n*99/100]);
  close(fd); unlink("/work/fs-probe.dat");
}
